/*
 * workerctl-sandbox: the first process of every job, exec'd by the supervisor (as root) in its place. It is the
 * one program of workerctl's that runs with privileges on a job's behalf, so it is small, statically linked (no
 * dynamic loader reads its environment) and started with a fixed environment and "/" as its working directory.
 * Nothing of the job's own reaches it as an instruction: the job's command, variables and paths are strings it
 * hands to execve(2) after it has become the job's user and given up every privilege, never earlier.
 *
 * In one exec it joins the job's cgroups (before anything of the job runs, so the job is a member before it can
 * fork), optionally gives the job namespaces of its own and a root file system built from nothing, switches to
 * the job's user with no supplementary groups, no capabilities and no way to gain privileges, confines the job's
 * system calls with a seccomp filter, and runs the job.
 *
 * With namespaces (-n) the job gets its own PID, mount, IPC, UTS and cgroup namespaces (and with -N a network
 * namespace holding only a loopback). Its root is a read-only tmpfs holding only what it is shown: read-only
 * binds of the system paths (-R), its home (-b, read-write), private tmpfs mounts (-t), a /dev of a few
 * harmless devices and a /proc of its own, with Docker's masked /proc paths covered. Nothing else of the host
 * is mounted, so the mount table, /sys, other users' homes and the server's files are not there to be seen; a
 * path that must stay hidden though it lies inside a shown one (-H: the server's key under /etc, say) is
 * covered. The job's command runs as PID 2 under an init (PID 1) of this program's own, which reaps every
 * orphan; when the command exits, init exits, and the kernel ends everything else in the namespace. This
 * process makes only the PID namespace, which only its children enter, and init makes the rest and the root:
 * so this process stays in the host's mount namespace, where the keeper (below) writes its files. It waits for
 * init and then ends exactly as the command did (the same exit code, or the same signal), so the supervisor
 * sees the command's own status. Should it be killed, init is killed with it: nothing would be left to keep the
 * job to its time limit and its lease.
 *
 * With -k this process is the job's keeper, as conmon is a container's and slurmstepd a Slurm job step's: the
 * supervisor may stop or crash while the job runs on, and a later one adopt it, so the job's output and its
 * exit status must outlive the supervisor. The keeper is "attached" while it has a connection to a supervisor.
 * Without -r, losing it ends the job. With -r, while detached, the keeper copies the job's output into a spool
 * (as bytes: nothing of the job's is ever interpreted here), enforces the job's time limit, and records how the
 * job ended; a supervisor attaches by connecting to the keeper's socket, and is told how much is spooled and
 * handed the output pipe. With -l the keeper ends the job once the host's lease lapses, so that a host cut off
 * from its cluster stops its jobs before they are run elsewhere (self-fencing). It ends a job as the supervisor
 * does: SIGTERM to the job's process group, then, after the grace (-G), SIGKILL to init, which takes the whole
 * namespace with it. None of its descriptors reaches init or the job, and it never writes to the job's output
 * pipe, which while it is detached it may be the only one to read.
 *
 * The supervisor ends a job by signalling its process group once. This process and init block the signals
 * that end a job, from the start, rather than ignore them: a blocked signal is held, where an ignored one (and
 * any signal to a namespace's init without a handler) is dropped, and the kernel hands a process group's
 * signal to a child being forked only if its parent takes it. So a job told to end before its command began
 * never begins, and one told to end while init was starting the command gets it all the same; without this,
 * a command started just after the signal would run on unsignalled.
 *
 * Options (the supervisor passes them with -f, so that none shows in the command line a job can read as
 * /proc/1/cmdline), in the order they take effect:
 *   -f FD        read every other option from FD: NUL-terminated strings, as they would stand in argv
 *   -j FILE      write "0" to FILE, a cgroup.procs file: join that cgroup (repeatable)
 *   -a SCORE     the job's OOM score adjustment (the supervisor's own is low; a job's should not be)
 *   -n           new PID, mount, IPC, UTS and cgroup namespaces, and a root of its own
 *   -N           and a new network namespace with only a loopback (with -n)
 *   -J FD        or join the network namespace open as FD, made with its loopback up for this job alone
 *                (the supervisor makes them ahead of jobs: making one costs more than the rest of the sandbox)
 *   -o NAME      the namespace's host name (with -n)
 *   -R PATH      show this system path, read-only and without setuid, at the same place (with -n)
 *   -H PATH      cover PATH, if a shown path holds it, with an empty directory or /dev/null (with -n)
 *   -b SRC:DST   bind the directory SRC at DST, read-write (with -n)
 *   -t DIR       a private tmpfs at DIR, mode 1777 (with -n)
 *   -u UID -g GID   run as this user and group, with no supplementary groups; neither may be 0
 *   -d DIR       run in DIR (entered as the job's user)
 *   -e NAME=VALUE   a variable of the job's environment (repeatable; the job's environment is only these)
 *   -S FD        install the seccomp filter in FD (an array of struct sock_filter) just before the program
 *   -k FD        keep the job (with -n; from its own process group): FD is a connected AF_UNIX SOCK_SEQPACKET
 *                socket to the supervisor. The keeper sends 'F' on it before it ends the job for the lease; the
 *                supervisor sends 'c' once it has copied the spool, which the keeper then empties
 *   -G MS        the grace, in milliseconds, from the keeper's SIGTERM to its SIGKILL (with -k; default 0)
 *   -l FD        end the job when the lease, open read-only as FD, lapses (with -k): 16 bytes written in place,
 *                an int64 deadline in nanoseconds of CLOCK_BOOTTIME then its complement (~deadline) as a check,
 *                in native byte order; a lease that cannot be read whole has lapsed
 *   -r DIR       live restore (with -k, -O and -T): in DIR, root's alone, the keeper listens on keeper.sock
 *                (SOCK_SEQPACKET) and answers each connection, which becomes the control connection, with a
 *                struct hello and, while it holds it, the output pipe's read end; it spools the output into
 *                spool while detached, and when the job has ended writes exit:
 *                "status WAIT-STATUS\nended-by none|time-limit|fence\n"
 *   -O FD        the read end of the job's output pipe (with -r)
 *   -T MS        the job's time limit in milliseconds from this program's start, enforced while detached (with -r)
 *   -P BYTES     the spool's cap (with -r; default 64 MiB): beyond it the job's output waits in the pipe
 * then -- PROGRAM [ARGUMENT]..., PROGRAM an absolute path.
 *
 * A failure to set up anything asked for is one line on stderr (the job's output) and exit status 125; no step
 * is skipped. As root, it refuses to run a program as root.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SETUP_FAILED 125
#define MAX_ITEMS 32
#define MAX_ENVIRONMENT 1024
#define MAX_OPTIONS_BYTES (16 * 1024 * 1024)
/* About 31 years: no deadline reckoned from a time in milliseconds overflows an int64 of nanoseconds. */
#define MAX_MILLISECONDS (1000LL * 1000 * 1000 * 1000)
#define DEFAULT_SPOOL_CAP (64LL * 1024 * 1024)
#define SPOOL_CHUNK (64 * 1024)
/* The job's root, while it is being built: a tmpfs mounted over /tmp in the job's own mount namespace. */
#define NEW_ROOT "/tmp"

struct bind {
    const char *source;
    const char *target;
    int fd;
};

struct shown {
    const char *path;
    int fd;                 /* the directory to bind, or -1 */
    char link[PATH_MAX];    /* or the symbolic link to copy ("" for neither: absent here) */
};

struct options {
    const char *joins[MAX_ITEMS];
    int join_count;
    const char *oom_score_adj;
    int namespaces, network;
    int network_fd; /* a network namespace to join, or -1 */
    const char *hostname;
    struct shown shown[MAX_ITEMS];
    int shown_count;
    const char *hides[MAX_ITEMS];
    int hide_count;
    struct bind binds[MAX_ITEMS];
    int bind_count;
    const char *tmpfs[MAX_ITEMS];
    int tmpfs_count;
    uid_t uid;
    gid_t gid;
    int switch_user, switch_group;
    const char *directory;
    char *environment[MAX_ENVIRONMENT + 1];
    int environment_count;
    struct sock_fprog filter;
    char **program;
    /* The keeper's, each -1 where not given. */
    int control_fd, lease_fd, output_fd;
    long long grace_ms, time_limit_ms, spool_cap;
    const char *keeper_directory; /* or NULL */
};

static void fail(const char *what, ...) {
    int saved = errno;
    va_list arguments;
    char message[512];
    va_start(arguments, what);
    vsnprintf(message, sizeof message, what, arguments);
    va_end(arguments);
    dprintf(2, "workerctl: the job's sandbox could not be set up: %s: %s\n", message, strerror(saved));
    _exit(SETUP_FAILED);
}

static void refuse(const char *what, const char *text) {
    errno = EINVAL;
    fail("%s %s", what, text);
}

static void add(const char **items, int *count, const char *item) {
    if (*count == MAX_ITEMS) {
        errno = E2BIG;
        fail("more than %d of one option", MAX_ITEMS);
    }
    items[(*count)++] = item;
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) fail("writing %s", path);
    close(fd);
}

/* A user or group ID: a decimal number, neither 0 (root) nor (uid_t)-1 (which set*id take for "unchanged"). */
static unsigned int account_id(const char *text, const char *what) {
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno || *end || end == text || *text < '0' || *text > '9' || value == 0 || value >= UINT32_MAX)
        refuse(what, text);
    return (unsigned int)value;
}

/* A decimal number from 0 to `most`, digits only. */
static long long decimal(const char *text, const char *what, long long most) {
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || *end || end == text || *text < '0' || *text > '9' || value > most) refuse(what, text);
    return value;
}

static int descriptor(const char *text) {
    return (int)decimal(text, "descriptor", INT_MAX);
}

/* The whole of what FD holds (from its start, so that one description shared by several jobs can be read by
   each), and its size; the descriptor is closed, so the job never inherits it. */
static char *read_all(int fd, size_t *size, size_t most) {
    struct stat status;
    if (fstat(fd, &status) < 0) fail("reading descriptor %d", fd);
    if (status.st_size < 0 || (size_t)status.st_size > most) {
        errno = EFBIG;
        fail("reading descriptor %d", fd);
    }
    char *data = malloc((size_t)status.st_size + 1);
    if (!data) fail("reading descriptor %d", fd);
    size_t done = 0;
    while (done < (size_t)status.st_size) {
        ssize_t got = pread(fd, data + done, (size_t)status.st_size - done, (off_t)done);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) fail("reading descriptor %d", fd);
        done += (size_t)got;
    }
    close(fd);
    data[done] = '\0';
    *size = done;
    return data;
}

/* The options in FD as an argument vector behind `name`: NUL-terminated strings, the last one included. */
static char **options_from(int fd, char *name, int *count) {
    size_t size;
    char *data = read_all(fd, &size, MAX_OPTIONS_BYTES);
    if (size == 0 || data[size - 1] != '\0') refuse("options", "not NUL-terminated");
    int strings = 0;
    for (size_t i = 0; i < size; i++) strings += data[i] == '\0';
    char **vector = calloc((size_t)strings + 2, sizeof *vector);
    if (!vector) fail("reading the options");
    vector[0] = name;
    char *next = data;
    for (int i = 1; i <= strings; i++) {
        vector[i] = next;
        next += strlen(next) + 1;
    }
    *count = strings + 1;
    return vector;
}

static void read_filter(const char *text, struct options *options) {
    size_t size;
    char *filter = read_all(descriptor(text), &size, BPF_MAXINSNS * sizeof(struct sock_filter));
    if (size == 0 || size % sizeof(struct sock_filter)) refuse("seccomp filter of size", "not whole instructions");
    options->filter.len = (unsigned short)(size / sizeof(struct sock_filter));
    options->filter.filter = (struct sock_filter *)filter;
}

static void parse(int argc, char **argv, struct options *options) {
    int option;
    optind = 1;
    while ((option = getopt(argc, argv, "+j:a:nNJ:o:R:H:b:t:u:g:d:e:S:k:G:l:r:O:T:P:")) != -1) {
        switch (option) {
        case 'j': add(options->joins, &options->join_count, optarg); break;
        case 'a': options->oom_score_adj = optarg; break;
        case 'n': options->namespaces = 1; break;
        case 'N': options->network = 1; break;
        case 'J': options->network_fd = descriptor(optarg); break;
        case 'o': options->hostname = optarg; break;
        case 'R':
            if (options->shown_count == MAX_ITEMS || optarg[0] != '/') refuse("system path", optarg);
            options->shown[options->shown_count++].path = optarg;
            break;
        case 'H': add(options->hides, &options->hide_count, optarg); break;
        case 'b': {
            char *colon = strrchr(optarg, ':'); /* the target is a path of the job's, with no colon */
            if (!colon || options->bind_count == MAX_ITEMS || colon[1] != '/') refuse("bind", optarg);
            *colon = '\0';
            options->binds[options->bind_count++] = (struct bind){optarg, colon + 1, -1};
            break;
        }
        case 't': add(options->tmpfs, &options->tmpfs_count, optarg); break;
        case 'u': options->uid = account_id(optarg, "user ID"); options->switch_user = 1; break;
        case 'g': options->gid = account_id(optarg, "group ID"); options->switch_group = 1; break;
        case 'd': options->directory = optarg; break;
        case 'e':
            if (options->environment_count == MAX_ENVIRONMENT || !strchr(optarg, '=')) refuse("variable", optarg);
            options->environment[options->environment_count++] = optarg;
            break;
        case 'S': read_filter(optarg, options); break;
        case 'k': options->control_fd = descriptor(optarg); break;
        case 'G': options->grace_ms = decimal(optarg, "grace", MAX_MILLISECONDS); break;
        case 'l': options->lease_fd = descriptor(optarg); break;
        case 'r': options->keeper_directory = optarg; break;
        case 'O': options->output_fd = descriptor(optarg); break;
        case 'T': options->time_limit_ms = decimal(optarg, "time limit", MAX_MILLISECONDS); break;
        case 'P': options->spool_cap = decimal(optarg, "spool cap", LLONG_MAX); break;
        default: refuse("usage:", "workerctl-sandbox [-f FD | OPTION...] -- PROGRAM [ARGUMENT]...");
        }
    }
    if (optind >= argc) refuse("no program to run", "");
    if (argv[optind][0] != '/') refuse("the program must be an absolute path, not", argv[optind]);
    if (options->switch_user != options->switch_group) refuse("-u and -g", "go together");
    if ((options->network || options->network_fd >= 0) && !options->namespaces) refuse("-N and -J", "need -n");
    /* Refused rather than ignored: a supervisor must not take a job for kept, or fenced, when it is not. */
    if (options->control_fd >= 0 && !options->namespaces) refuse("-k", "needs -n");
    if ((options->grace_ms >= 0 || options->lease_fd >= 0 || options->keeper_directory) && options->control_fd < 0)
        refuse("-G, -l and -r", "need -k");
    if ((options->output_fd >= 0 || options->time_limit_ms >= 0 || options->spool_cap >= 0) &&
        !options->keeper_directory)
        refuse("-O, -T and -P", "need -r");
    if (options->keeper_directory && (options->output_fd < 0 || options->time_limit_ms < 0))
        refuse("-r", "needs -O and -T");
    /* The keeper's SIGTERM goes to its process group: that must be the job's alone, not its supervisor's too. */
    if (options->control_fd >= 0 && getpgrp() != getpid()) refuse("-k", "needs a process group of its own");
    if (options->grace_ms < 0) options->grace_ms = 0;
    if (options->spool_cap < 0) options->spool_cap = DEFAULT_SPOOL_CAP;
    if (geteuid() == 0 && !options->switch_user) refuse("refusing to run the job as", "root");
    options->program = argv + optind;
}

/* Make every directory of `path` that is missing (inside the tmpfs this program mounted as the job's root). */
static void make_directories(const char *path) {
    char partial[PATH_MAX];
    if (snprintf(partial, sizeof partial, "%s", path) >= (int)sizeof partial) {
        errno = ENAMETOOLONG;
        fail("making %s", path);
    }
    for (char *slash = partial + 1; *slash; slash++) {
        if (*slash != '/') continue;
        *slash = '\0';
        if (mkdir(partial, 0755) < 0 && errno != EEXIST) fail("making %s", partial);
        *slash = '/';
    }
    if (mkdir(partial, 0755) < 0 && errno != EEXIST) fail("making %s", partial);
}

/* `path` inside the new root. */
static const char *in_root(const char *path, char *buffer) {
    if (snprintf(buffer, PATH_MAX, NEW_ROOT "%s", path) >= PATH_MAX) {
        errno = ENAMETOOLONG;
        fail("placing %s", path);
    }
    return buffer;
}

/* Bind the object open as `fd` at `target` (a directory this program made), then make the bind read-only (or
   not) and never setuid or a way to devices: a bind takes the flags asked for only when remounted. */
static void bind_at(int fd, const char *target, int read_only) {
    char source[64];
    snprintf(source, sizeof source, "/proc/self/fd/%d", fd);
    if (mount(source, target, NULL, MS_BIND, NULL) < 0 ||
        mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (read_only ? MS_RDONLY : 0),
              NULL) < 0)
        fail("binding at %s", target);
}

static void make_link(const char *target, const char *path) {
    if (symlink(target, path) < 0) fail("making the link %s", path);
}

/* Open what will be shown, before anything is mounted over the paths that lead to it. */
static void open_sources(struct options *options) {
    for (int i = 0; i < options->shown_count; i++) {
        struct shown *shown = &options->shown[i];
        shown->fd = open(shown->path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (shown->fd < 0 && errno == ENOENT) continue; /* not on this host: nothing to show */
        struct stat status;
        if (shown->fd < 0 || fstat(shown->fd, &status) < 0) fail("opening %s", shown->path);
        if (S_ISLNK(status.st_mode)) { /* /bin -> usr/bin, say: the same link in the job's root */
            ssize_t length = readlinkat(shown->fd, "", shown->link, sizeof shown->link - 1);
            if (length < 0) fail("reading the link %s", shown->path);
            shown->link[length] = '\0';
            close(shown->fd);
            shown->fd = -1;
        } else if (!S_ISDIR(status.st_mode)) {
            errno = ENOTDIR;
            fail("showing %s", shown->path);
        }
    }
    for (int i = 0; i < options->bind_count; i++) {
        struct stat status;
        /* The last component is the home itself, which only root's directories lead to. */
        options->binds[i].fd = open(options->binds[i].source, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
        if (options->binds[i].fd < 0 || fstat(options->binds[i].fd, &status) < 0)
            fail("opening %s", options->binds[i].source);
    }
}

/* The devices a job may use, made afresh (their numbers are fixed by the kernel's ABI); the rest of /dev is links
   and mount points. */
static const struct device {
    const char *name;
    unsigned int major, minor;
} devices[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
static const char *const device_links[][2] = {
    {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
    {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
};

static void set_up_dev(void) {
    char path[PATH_MAX];
    make_directories(in_root("/dev", path));
    if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") < 0) fail("mounting %s", path);
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        snprintf(path, sizeof path, NEW_ROOT "/dev/%s", devices[i].name);
        if (mknod(path, S_IFCHR | 0666, makedev(devices[i].major, devices[i].minor)) < 0 || chmod(path, 0666) < 0)
            fail("making %s", path);
    }
    for (size_t i = 0; i < sizeof device_links / sizeof device_links[0]; i++) {
        snprintf(path, sizeof path, NEW_ROOT "/dev/%s", device_links[i][1]);
        make_link(device_links[i][0], path);
    }
    make_directories(in_root("/dev/pts", path));
    /* Its own pseudo-terminals, and few: the kernel's are counted host-wide (kernel.pty.max). */
    if (mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,max=64") < 0)
        fail("mounting %s", path);
    make_directories(in_root("/dev/shm", path));
    /* Read-only from now on: the job may use these devices, not make others (it has no right to anyway). */
    if (mount(NULL, NEW_ROOT "/dev", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") < 0)
        fail("making /dev read-only");
}

/* Cover `hidden` where a shown path holds it; where nothing is there, there is nothing to see. It is looked up
   in the job's root as the job would see it (an absolute link inside a shown path leads within that root, not
   to the host's), and the cover is mounted through a descriptor of what was found, so no link is followed. */
static void cover(int root, const char *hidden) {
    struct open_how how = {.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
    int fd = (int)syscall(SYS_openat2, root, hidden, &how, sizeof how);
    if (fd < 0 && (errno == ENOENT || errno == ENOTDIR)) return;
    struct stat status;
    if (fd < 0 || fstat(fd, &status) < 0) fail("looking at %s", hidden);
    char place[64];
    snprintf(place, sizeof place, "/proc/self/fd/%d", fd);
    if (S_ISDIR(status.st_mode)) {
        if (mount("tmpfs", place, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=4k") < 0)
            fail("covering %s", hidden);
    } else if (S_ISREG(status.st_mode)) {
        if (mount("/dev/null", place, NULL, MS_BIND, NULL) < 0) fail("covering %s", hidden);
    } else {
        errno = EINVAL; /* the supervisor, and the list of /proc's, name files and directories only */
        fail("covering %s", hidden);
    }
    close(fd);
}

/* The job's root: built in a tmpfs from what it is shown, then made its root and read-only. */
static void set_up_root(struct options *options) {
    char path[PATH_MAX];
    mode_t job_umask = umask(022); /* what is made here is for the job to traverse; the job keeps its own umask */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail("making mounts private");
    open_sources(options);
    if (mount("tmpfs", NEW_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
        fail("mounting the job's root");
    for (int i = 0; i < options->shown_count; i++) {
        struct shown *shown = &options->shown[i];
        in_root(shown->path, path);
        if (shown->fd >= 0) {
            make_directories(path);
            bind_at(shown->fd, path, 1);
            close(shown->fd);
        } else if (shown->link[0]) {
            char *slash = strrchr(path, '/');
            *slash = '\0';
            make_directories(path);
            *slash = '/';
            make_link(shown->link, path);
        }
    }
    int root = open(NEW_ROOT, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) fail("opening the job's root");
    for (int i = 0; i < options->hide_count; i++) cover(root, options->hides[i]);
    close(root);
    set_up_dev();
    for (int i = 0; i < options->bind_count; i++) {
        make_directories(in_root(options->binds[i].target, path));
        bind_at(options->binds[i].fd, path, 0);
        close(options->binds[i].fd);
    }
    for (int i = 0; i < options->tmpfs_count; i++) {
        make_directories(in_root(options->tmpfs[i], path));
        if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0) fail("mounting a tmpfs at %s", path);
    }
    make_directories(in_root("/proc", path));
    /* pivot_root(".", ".") stacks the old root on the new one; detaching it leaves the new one alone. */
    if (chdir(NEW_ROOT) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 ||
        chdir("/") < 0)
        fail("entering the job's root");
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        fail("making the job's root read-only");
    umask(job_umask);
}

/* Docker's masked and read-only /proc paths (moby's oci/defaults.go), and the host-wide files that would tell
   one user of another's: key-users (every job user's ID, and its count of keys: its running jobs), partitions
   and diskstats (every home's size and I/O), fs (each home file system's free space and journal); a path this
   kernel lacks needs nothing. */
static const char *const masked_proc[] = {
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats",
    "/proc/key-users", "/proc/partitions", "/proc/diskstats", "/proc/fs",
};
static const char *const read_only_proc[] = {"/proc/bus", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};

static void set_up_proc(void) {
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail("mounting /proc");
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) fail("opening the job's root");
    for (size_t i = 0; i < sizeof masked_proc / sizeof masked_proc[0]; i++) cover(root, masked_proc[i]);
    close(root);
    for (size_t i = 0; i < sizeof read_only_proc / sizeof read_only_proc[0]; i++) {
        int fd = open(read_only_proc[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) continue;
        if (fd < 0) fail("opening %s", read_only_proc[i]);
        bind_at(fd, read_only_proc[i], 1);
        close(fd);
    }
}

static void loopback_up(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq request = {0};
    strcpy(request.ifr_name, "lo");
    if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &request) < 0) fail("finding the loopback");
    request.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &request) < 0) fail("bringing the loopback up");
    close(fd);
}

/* The signals that end a job: the supervisor's SIGTERM, and a terminal's. */
static const int ending_signals[] = {SIGTERM, SIGINT, SIGHUP};
#define ENDING_SIGNAL_COUNT (int)(sizeof ending_signals / sizeof ending_signals[0])

static void hold_ending_signals(void) {
    sigset_t held;
    sigemptyset(&held);
    for (int i = 0; i < ENDING_SIGNAL_COUNT; i++) sigaddset(&held, ending_signals[i]);
    sigprocmask(SIG_BLOCK, &held, NULL);
}

/* An ending signal this process holds, or 0. Pending signals are not inherited: what a process held before
   it forked, its child never had. */
static int held_ending_signal(void) {
    sigset_t pending;
    if (sigpending(&pending) < 0) return 0;
    for (int i = 0; i < ENDING_SIGNAL_COUNT; i++)
        if (sigismember(&pending, ending_signals[i])) return ending_signals[i];
    return 0;
}

/* After a fork: an ending signal that came before it reached this process but not the child, so send it on to
   the whole process group, the child included (one that came during the fork reached both; a second of the
   same signal merges with it while it is held). */
static void pass_on_held_signal(void) {
    int number = held_ending_signal();
    if (number) kill(0, number);
}

static void reset_signals(void) {
    sigset_t none;
    sigemptyset(&none);
    for (int number = 1; number < NSIG; number++) signal(number, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL); /* last: a held ending signal ends the job here, before it runs */
}

/* Give up every capability for good: the bounding set too, so nothing the job runs can have one. */
static void drop_capabilities(void) {
    if (geteuid() != 0) return;
    for (int capability = 0;; capability++) {
        if (prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) == 0) continue;
        if (errno == EINVAL) break; /* past the last capability this kernel has */
        fail("dropping capability %d", capability);
    }
}

/* Become the job: no core files, its user, its directory, no privileges and no way to gain any, a session
   keyring of its own, its seccomp filter, then its program with its environment. */
static void run_program(struct options *options) {
    drop_capabilities();
    /* No core files: the host's core_pattern may hand them to a program that runs as root. */
    struct rlimit no_core = {0, 0};
    if (setrlimit(RLIMIT_CORE, &no_core) < 0) fail("limiting core files");
    if (options->switch_user &&
        (setgroups(0, NULL) < 0 || setresgid(options->gid, options->gid, options->gid) < 0 ||
         setresuid(options->uid, options->uid, options->uid) < 0))
        fail("switching to user %u", (unsigned int)options->uid);
    if (geteuid() == 0 || getuid() == 0) { /* -u was checked; this is the kernel's word for it */
        errno = EPERM;
        fail("leaving root");
    }
    if (options->directory && chdir(options->directory) < 0) fail("entering %s", options->directory);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail("giving up privileges");
    /* A new, empty session keyring, the job's own: none of the supervisor's keys, none of an earlier job's. */
    if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0 && errno != ENOSYS)
        fail("making a session keyring");
    if (options->filter.len && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &options->filter) < 0)
        fail("installing the seccomp filter");
    reset_signals();
    options->environment[options->environment_count] = NULL;
    execve(options->program[0], options->program, options->environment);
    dprintf(2, "workerctl: cannot run %s: %s\n", options->program[0], strerror(errno));
    _exit(127);
}

/* PID 1 of the job's namespace: make the job's other namespaces and its root, start the program, reap every
   orphan, and report how the program ended. */
static void run_init(struct options *options, int report_fd) {
    /* Killed with the process that forked it (see the top). That one may have been killed before this took
       effect: then the report has no reader. */
    struct pollfd reader = {.fd = report_fd, .events = POLLOUT};
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || poll(&reader, 1, 0) < 0) fail("tying init to its parent");
    if (reader.revents & POLLERR) _exit(SETUP_FAILED);
    if (options->network_fd >= 0) {
        if (setns(options->network_fd, CLONE_NEWNET) < 0) fail("joining the job's network namespace");
        close(options->network_fd);
    }
    int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP | (options->network ? CLONE_NEWNET : 0);
    if (unshare(flags) < 0) fail("making namespaces");
    set_up_root(options);
    if (options->hostname && sethostname(options->hostname, strlen(options->hostname)) < 0) fail("naming the host");
    if (options->network) loopback_up();
    set_up_proc();
    int ended = held_ending_signal();
    if (ended) { /* told to end before the program began: it never begins, and ends as if by that signal */
        if (write(report_fd, &ended, sizeof ended) < 0) _exit(SETUP_FAILED); /* the wait status of that death */
        _exit(0);
    }
    pid_t program = fork();
    if (program < 0) fail("starting the job");
    if (program == 0) {
        close(report_fd);
        run_program(options);
    }
    pass_on_held_signal();
    for (;;) {
        int status;
        pid_t reaped = waitpid(-1, &status, 0);
        if (reaped == program) {
            if (write(report_fd, &status, sizeof status) < 0) _exit(SETUP_FAILED);
            _exit(0); /* and the kernel ends whatever else the job left in its namespace */
        }
        if (reaped < 0 && errno != EINTR) _exit(SETUP_FAILED);
    }
}

/* End as the program ended: with its exit code, or killed by its signal. */
static void end_as(int status) {
    if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
    int number = WTERMSIG(status);
    signal(number, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, number);
    sigprocmask(SIG_UNBLOCK, &only, NULL);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* no core file of this program for the job's signal */
    kill(getpid(), number);
    _exit(128 + number);
}

#define NS_PER_SECOND 1000000000LL
#define NS_PER_MS 1000000LL

static int64_t boottime(void) {
    struct timespec now;
    clock_gettime(CLOCK_BOOTTIME, &now);
    return now.tv_sec * NS_PER_SECOND + now.tv_nsec;
}

/* Reap init and return how the program ended: its wait status as init reported it, or init's own if init ended
   before the program did. */
static int how_it_ended(pid_t init, int report_fd) {
    int init_status, program_status;
    while (waitpid(init, &init_status, 0) < 0)
        if (errno != EINTR) fail("waiting for the job's init");
    if (read(report_fd, &program_status, sizeof program_status) != (ssize_t)sizeof program_status)
        return init_status;
    return program_status;
}

/* Why the keeper ends a job; a hello numbers the first three so. */
enum ending { NOT_ENDING, TIME_LIMIT, FENCE, SUPERVISOR_LOST };
/* As DIR/exit names them. A lost supervisor ends a job only without -r, which writes no DIR/exit. */
static const char *const ended_by[] = {"none", "time-limit", "fence"};

/* What a supervisor is told as it attaches (native byte order). */
struct hello {
    uint64_t spool_bytes; /* the spool's size: the output spooled since a supervisor last consumed it */
    uint64_t elapsed_ns;  /* since this program started, in CLOCK_BOOTTIME */
    int32_t keeper_pid;
    int32_t ending;       /* enum ending */
};
_Static_assert(sizeof(struct hello) == 24, "a hello is 24 bytes, without padding");

struct keeper {
    const struct options *options;
    int64_t started; /* CLOCK_BOOTTIME, as main began */
    pid_t init;
    int init_fd;     /* init's pidfd */
    int control;     /* the control connection, or -1: detached */
    int output;      /* the output pipe's read end (with -r), or -1 once it has ended */
    int pipe_size;
    int directory;   /* -r's directory, or -1 */
    int listening;   /* DIR/keeper.sock, or -1 */
    int spool;       /* DIR/spool, or -1 until it is first needed */
    uint64_t spooled; /* its size */
    int spool_failed; /* a write to it failed: it takes no more until a supervisor has consumed it */
    int null;        /* /dev/null, this process's output once init runs */
    int timer;       /* a CLOCK_BOOTTIME timer, set for the nearest deadline */
    enum ending ending;
    int64_t grace_end;
    int killed;      /* init has been sent SIGKILL */
};

/* What the keeper needs before init is forked (so that failing to get it ends nothing of the job's): its way to
   silence its own output, its timer, and with -r its directory and the socket supervisors attach by. */
static void prepare_keeper(struct keeper *k) {
    const struct options *options = k->options;
    k->null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (k->null < 0) fail("opening /dev/null");
    /* Deadlines in CLOCK_BOOTTIME, the lease's clock, which goes on while the host is suspended (poll's timeout
       would not): a host that wakes up past its lease ends its jobs at once. */
    k->timer = timerfd_create(CLOCK_BOOTTIME, TFD_CLOEXEC);
    if (k->timer < 0) fail("making a timer");
    if (!options->keeper_directory) return;
    struct stat status;
    k->directory = open(options->keeper_directory, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (k->directory < 0 || fstat(k->directory, &status) < 0) fail("opening %s", options->keeper_directory);
    if (status.st_uid != geteuid() || status.st_mode & 077) { /* root writes there: no one else may */
        errno = EPERM;
        fail("keeping files in %s, which is not root's alone", options->keeper_directory);
    }
    /* Bound by way of the directory's descriptor: a socket's path has 108 bytes, a data directory's may not. */
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    snprintf(address.sun_path, sizeof address.sun_path, "/proc/self/fd/%d/keeper.sock", k->directory);
    if (unlinkat(k->directory, "keeper.sock", 0) < 0 && errno != ENOENT)
        fail("removing %s/keeper.sock", options->keeper_directory);
    /* Non-blocking: a connection gone by the time it is accepted must not hold the keeper up. */
    k->listening = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (k->listening < 0 || bind(k->listening, (struct sockaddr *)&address, sizeof address) < 0 ||
        listen(k->listening, 8) < 0)
        fail("listening at %s/keeper.sock", options->keeper_directory);
    k->pipe_size = fcntl(options->output_fd, F_GETPIPE_SZ);
    if (k->pipe_size < 0) fail("taking descriptor %d for the job's output pipe", options->output_fd);
}

/* In init, first: none of the keeper's descriptors reaches the job. */
static void forget_keeper(const struct keeper *k) {
    const int descriptors[] = {k->control, k->options->lease_fd, k->output, k->directory, k->listening, k->null,
                               k->timer};
    for (size_t i = 0; i < sizeof descriptors / sizeof descriptors[0]; i++)
        if (descriptors[i] >= 0) close(descriptors[i]);
}

/* Fail once init runs: never leave the job running with no one to keep it. */
static void abandon(const struct keeper *k, const char *what) {
    kill(k->init, SIGKILL);
    fail("%s", what);
}

/* The lease's deadline, or INT64_MIN (lapsed) where it cannot be read whole. The agent writes it in place, so a
   read may catch half of a write; a few more reads outlast that. */
static int64_t lease_deadline(int fd) {
    for (int attempt = 0; attempt < 4; attempt++) {
        int64_t lease[2];
        if (pread(fd, lease, sizeof lease, 0) == (ssize_t)sizeof lease && lease[1] == ~lease[0]) return lease[0];
    }
    return INT64_MIN;
}

/* End the job, for the first reason that comes: SIGTERM to its processes now, SIGKILL to init after the grace. */
static void begin_ending(struct keeper *k, enum ending reason, int64_t now) {
    if (k->ending) return;
    if (reason == FENCE && k->control >= 0) send(k->control, "F", 1, MSG_NOSIGNAL); /* why, before it begins */
    k->ending = reason;
    k->grace_end = now + k->options->grace_ms * NS_PER_MS;
    kill(0, SIGTERM); /* the job's process group: this process and init hold it, the job's processes get it */
}

/* Act on the deadlines that have passed (the lease's, the time limit's, the grace's) and set the timer for the
   next. The lease is read again at every wake-up: the agent moves its deadline on while the host is in the
   cluster. */
static void watch_deadlines(struct keeper *k) {
    const struct options *options = k->options;
    int64_t now = boottime();
    int64_t lease = options->lease_fd >= 0 && !k->ending ? lease_deadline(options->lease_fd) : INT64_MAX;
    int64_t limit = options->time_limit_ms >= 0 && k->control < 0 && !k->ending
                        ? k->started + options->time_limit_ms * NS_PER_MS : INT64_MAX;
    if (now >= lease) begin_ending(k, FENCE, now);
    else if (now >= limit) begin_ending(k, TIME_LIMIT, now);
    if (k->ending && !k->killed && now >= k->grace_end) {
        kill(k->init, SIGKILL); /* and the kernel kills everything else in the namespace */
        k->killed = 1;
    }
    int64_t next = k->ending ? (k->killed ? INT64_MAX : k->grace_end) : (lease < limit ? lease : limit);
    struct itimerspec timer = {0}; /* all zero: disarmed */
    if (next != INT64_MAX) timer.it_value = (struct timespec){next / NS_PER_SECOND, next % NS_PER_SECOND};
    if (timerfd_settime(k->timer, TFD_TIMER_ABSTIME, &timer, NULL) < 0) abandon(k, "setting a timer");
}

/* Move up to `most` bytes of the job's output from the pipe to the end of the spool; return how many, 0 at the
   pipe's end (then closed), or -1 for none now. splice(2) moves them within the kernel, through no buffer of
   this process's, and takes from the pipe only what it has written: a full disk loses nothing (the spool then
   takes no more until a supervisor has consumed it, and the output waits in the pipe). */
static ssize_t spool(struct keeper *k, size_t most) {
    if (k->spool < 0)
        k->spool = openat(k->directory, "spool", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (k->spool < 0) {
        k->spool_failed = 1;
        return -1;
    }
    off64_t end = (off64_t)k->spooled;
    ssize_t moved = splice(k->output, NULL, k->spool, &end, most, SPLICE_F_NONBLOCK);
    if (moved > 0) k->spooled += (uint64_t)moved;
    if (moved == 0) {
        close(k->output);
        k->output = -1;
    }
    if (moved < 0 && errno != EAGAIN && errno != EINTR) k->spool_failed = 1;
    return moved;
}

/* A message from the supervisor, or its end. */
static void heed_supervisor(struct keeper *k) {
    char message[2]; /* room for more than one byte: a longer message is not taken for a short one */
    ssize_t got = recv(k->control, message, sizeof message, MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (got <= 0) {
        close(k->control);
        k->control = -1;
        /* Without -r nothing would read the job's output or keep its end: it ends with its supervisor. */
        if (k->directory < 0) begin_ending(k, SUPERVISOR_LOST, boottime());
        return;
    }
    /* "Consumed": the supervisor has copied the spool. */
    if (got == 1 && message[0] == 'c' && (k->spool < 0 || ftruncate(k->spool, 0) == 0)) {
        k->spooled = 0;
        k->spool_failed = 0;
    }
}

/* A supervisor attaches: its connection becomes the control connection (the newest wins: one still attached is
   on its way out), and it is told where the job stands and handed the output pipe, which is then its to read. */
static void attach(struct keeper *k) {
    int connection = accept4(k->listening, NULL, NULL, SOCK_CLOEXEC);
    if (connection < 0) return; /* gone before it was accepted; a supervisor that wants the job tries again */
    if (k->control >= 0) close(k->control);
    k->control = connection;
    struct hello hello = {k->spooled, (uint64_t)(boottime() - k->started), getpid(), k->ending};
    struct iovec data = {&hello, sizeof hello};
    union {
        char bytes[CMSG_SPACE(sizeof(int))];
        struct cmsghdr aligned;
    } rights = {{0}};
    struct msghdr message = {.msg_iov = &data, .msg_iovlen = 1};
    if (k->output >= 0) {
        message.msg_control = rights.bytes;
        message.msg_controllen = sizeof rights.bytes;
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_len = CMSG_LEN(sizeof(int));
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        memcpy(CMSG_DATA(header), &k->output, sizeof k->output);
    }
    if (sendmsg(connection, &message, MSG_NOSIGNAL) < 0) {
        close(connection);
        k->control = -1;
    }
}

/* Have poll watch `fd` for input, if it is open; its place among those watched, or -1. */
static int watch(struct pollfd *watched, nfds_t *count, int fd) {
    if (fd < 0) return -1;
    watched[*count] = (struct pollfd){.fd = fd, .events = POLLIN};
    return (int)(*count)++;
}

/* Keep the job until init ends. */
static void keep(struct keeper *k) {
    k->init_fd = (int)syscall(SYS_pidfd_open, k->init, 0);
    if (k->init_fd < 0) abandon(k, "watching the job's init");
    /* This process's output is the job's output pipe, which it reads, and while detached may be the only one to:
       a write of its own there could block it for good. */
    dup2(k->null, 1);
    dup2(k->null, 2);
    close(k->null);
    const uint64_t cap = (uint64_t)k->options->spool_cap;
    for (;;) {
        watch_deadlines(k);
        struct pollfd watched[5];
        nfds_t count = 0;
        int ended = watch(watched, &count, k->init_fd);
        watch(watched, &count, k->timer); /* a deadline: watch_deadlines sees to it */
        int control = watch(watched, &count, k->control);
        int spooling = k->control < 0 && !k->spool_failed && k->spooled < cap;
        int output = watch(watched, &count, spooling ? k->output : -1);
        int listening = watch(watched, &count, k->listening);
        if (poll(watched, count, -1) < 0) {
            if (errno == EINTR) continue;
            abandon(k, "waiting on the job");
        }
        if (control >= 0 && watched[control].revents) heed_supervisor(k);
        /* Before a supervisor attaches, which is told how much is spooled. */
        if (output >= 0 && watched[output].revents)
            spool(k, cap - k->spooled < SPOOL_CHUNK ? (size_t)(cap - k->spooled) : SPOOL_CHUNK);
        if (listening >= 0 && watched[listening].revents) attach(k);
        if (watched[ended].revents) return;
    }
}

/* Record how the job ended in DIR/exit, whole or not at all, for a supervisor that attaches once the keeper has
   gone (one that finds none takes the job's end as unknown). */
static void record_exit(const struct keeper *k, int status) {
    char text[64];
    int length = snprintf(text, sizeof text, "status %d\nended-by %s\n", status, ended_by[k->ending]);
    int fd = openat(k->directory, "exit.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return;
    int whole = write(fd, text, (size_t)length) == length;
    if (close(fd) == 0 && whole) renameat(k->directory, "exit.tmp", k->directory, "exit");
}

/* The job has ended with `status`: with -r, spool what it wrote last if no supervisor reads it, record how it
   ended and stop listening; then end as the job did. */
static void finish(struct keeper *k, int status) {
    if (k->directory >= 0) {
        /* Past the cap too, as the job is over: the pipe holds at most a pipe's worth of its output. Anything
           more would come from a process outside the namespace that was handed the pipe, and is not spooled. */
        if (k->control < 0 && k->output >= 0)
            for (ssize_t left = k->pipe_size, moved; left > 0 && (moved = spool(k, (size_t)left)) > 0;)
                left -= moved;
        record_exit(k, status);
        unlinkat(k->directory, "keeper.sock", 0);
    }
    end_as(status);
}

int main(int argc, char **argv) {
    int64_t started = boottime(); /* the keeper's time limit (-T), and a hello's elapsed time, count from here */
    hold_ending_signals(); /* until now an ending signal ends this process, before any of the job exists */
    struct options options = {.network_fd = -1, .control_fd = -1, .lease_fd = -1, .output_fd = -1,
                              .grace_ms = -1, .time_limit_ms = -1, .spool_cap = -1};
    if (argc == 3 && strcmp(argv[1], "-f") == 0) argv = options_from(descriptor(argv[2]), argv[0], &argc);
    parse(argc, argv, &options);
    for (int i = 0; i < options.join_count; i++) write_file(options.joins[i], "0");
    if (options.oom_score_adj) write_file("/proc/self/oom_score_adj", options.oom_score_adj);
    if (!options.namespaces) run_program(&options);

    /* Only this process's children enter the new PID namespace: this one stays in the host's namespaces. */
    if (unshare(CLONE_NEWPID) < 0) fail("making a PID namespace");
    struct keeper keeper = {.options = &options, .started = started, .control = options.control_fd,
                            .output = options.output_fd, .directory = -1, .listening = -1, .spool = -1,
                            .null = -1, .timer = -1};
    if (options.control_fd >= 0) prepare_keeper(&keeper);
    int ended = held_ending_signal();
    if (ended) finish(&keeper, ended); /* told to end before anything of the job ran: the wait status of that death */
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0) fail("making a pipe");
    pid_t init = fork();
    if (init < 0) fail("starting the job's init");
    if (init == 0) {
        close(report[0]);
        forget_keeper(&keeper);
        run_init(&options, report[1]);
    }
    close(report[1]);
    if (options.network_fd >= 0) close(options.network_fd); /* init's to join */
    pass_on_held_signal();
    /* The supervisor signals every process of the job; this one holds those signals and outlives the rest to
       report how the job ended. */
    if (options.control_fd < 0) end_as(how_it_ended(init, report[0]));
    keeper.init = init;
    keep(&keeper);
    finish(&keeper, how_it_ended(init, report[0]));
}
