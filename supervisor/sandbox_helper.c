/*
 * workerctl-sandbox: the first process of every job, exec'd by the supervisor (as root) in its place.
 *
 * It does in one exec what would otherwise take a chain of them: it joins the job's cgroups (before anything
 * of the job runs, so the job is a member before it can fork), optionally gives the job namespaces of its own,
 * switches to the job's user with no supplementary groups and no way to gain privileges, and runs the job.
 *
 * With namespaces (-n) the job gets its own PID, mount, IPC and UTS namespaces (and with -N a network
 * namespace holding only a loopback). The file system is read-only but for private tmpfs mounts (-t) and
 * read-write binds (-b); paths the job must not see (-H) are covered. The job's command runs as PID 2 under an
 * init (PID 1) of this program's own, which reaps every orphan; when the command exits, init exits, and the
 * kernel ends everything else in the namespace. This process waits for init and then ends exactly as the
 * command did (the same exit code, or the same signal), so the supervisor sees the command's own status.
 *
 * The supervisor ends a job by signalling its process group once. This process and init block the signals
 * that end a job, from the start, rather than ignore them: a blocked signal is held, where an ignored one (and
 * any signal to a namespace's init without a handler) is dropped, and the kernel hands a process group's
 * signal to a child being forked only if its parent takes it. So a job told to end before its command began
 * never begins, and one told to end while init was starting the command gets it all the same; without this,
 * a command started just after the signal would run on unsignalled.
 *
 * Options, in the order they take effect:
 *   -j FILE      write "0" to FILE, a cgroup.procs file: join that cgroup (repeatable)
 *   -a SCORE     the job's OOM score adjustment (the supervisor's own is low; a job's should not be)
 *   -n           new PID, mount, IPC and UTS namespaces
 *   -N           and a new network namespace with only a loopback (with -n)
 *   -o NAME      the namespace's host name (with -n)
 *   -b SRC:DST   bind SRC at DST, read-write (with -n; SRC may lie under a path that -H covers)
 *   -r           the file system read-only, all of it, but what this program mounts itself (with -n)
 *   -H PATH      cover PATH with an empty read-only directory, or /dev/null for a file (with -n)
 *   -t DIR       a private tmpfs at DIR, mode 1777 (with -n)
 *   -u UID -g GID   run as this user and group, with no supplementary groups
 *   -d DIR       run in DIR
 * then -- PROGRAM [ARGUMENT]...
 *
 * A failure to set up is one line on stderr (the job's output) and exit status 125.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/mount.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define SETUP_FAILED 125
#define MAX_ITEMS 32

struct bind {
    const char *source;
    const char *target;
};

struct options {
    const char *joins[MAX_ITEMS];
    int join_count;
    const char *oom_score_adj;
    int namespaces, network, read_only;
    const char *hostname;
    struct bind binds[MAX_ITEMS];
    int bind_count;
    const char *hides[MAX_ITEMS];
    int hide_count;
    const char *tmpfs[MAX_ITEMS];
    int tmpfs_count;
    uid_t uid;
    gid_t gid;
    int switch_user;
    const char *directory;
    char **program;
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

static void add(const char **items, int *count, const char *item) {
    if (*count == MAX_ITEMS) {
        errno = E2BIG;
        fail("more than %d of one option", MAX_ITEMS);
    }
    items[(*count)++] = item;
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) fail("joining %s", path);
    close(fd);
}

static long number(const char *text, const char *what) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || *end || end == text || value < 0) {
        errno = EINVAL;
        fail("%s %s", what, text);
    }
    return value;
}

static void parse(int argc, char **argv, struct options *options) {
    int option;
    while ((option = getopt(argc, argv, "+j:a:nNo:b:rH:t:u:g:d:")) != -1) {
        switch (option) {
        case 'j': add(options->joins, &options->join_count, optarg); break;
        case 'a': options->oom_score_adj = optarg; break;
        case 'n': options->namespaces = 1; break;
        case 'N': options->network = 1; break;
        case 'o': options->hostname = optarg; break;
        case 'b': {
            char *colon = strchr(optarg, ':');
            if (!colon || options->bind_count == MAX_ITEMS) {
                errno = EINVAL;
                fail("bind %s", optarg);
            }
            *colon = '\0';
            options->binds[options->bind_count++] = (struct bind){optarg, colon + 1};
            break;
        }
        case 'r': options->read_only = 1; break;
        case 'H': add(options->hides, &options->hide_count, optarg); break;
        case 't': add(options->tmpfs, &options->tmpfs_count, optarg); break;
        case 'u': options->uid = (uid_t)number(optarg, "user ID"); options->switch_user = 1; break;
        case 'g': options->gid = (gid_t)number(optarg, "group ID"); break;
        case 'd': options->directory = optarg; break;
        default: errno = EINVAL; fail("usage: workerctl-sandbox [OPTION]... -- PROGRAM [ARGUMENT]...");
        }
    }
    if (optind >= argc) {
        errno = EINVAL;
        fail("no program to run");
    }
    options->program = argv + optind;
}

/* Make every directory of `path` that is missing (inside a tmpfs this program mounted). */
static void make_directories(const char *path) {
    char partial[PATH_MAX];
    if (snprintf(partial, sizeof partial, "%s", path) >= (int)sizeof partial) {
        errno = ENAMETOOLONG;
        fail("binding at %s", path);
    }
    for (char *slash = partial + 1; *slash; slash++) {
        if (*slash != '/') continue;
        *slash = '\0';
        if (mkdir(partial, 0755) < 0 && errno != EEXIST) fail("making %s", partial);
        *slash = '/';
    }
    if (mkdir(partial, 0755) < 0 && errno != EEXIST) fail("making %s", partial);
}

static void make_read_only(void) {
    struct mount_attr attributes = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID};
    if (syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &attributes, sizeof attributes) == 0) return;
    if (errno != ENOSYS) fail("making the file system read-only");
    /* Before Linux 5.12: the root mount alone. */
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID, NULL) < 0)
        fail("making / read-only");
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

/* Everything that must happen in the job's new mount namespace, before its init starts. */
static void set_up_mounts(struct options *options) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail("making mounts private");
    /* Sources are opened in the new namespace (a bind takes only its own namespace's mounts), and before
       anything is covered, since a source may lie under a path that is hidden. */
    int sources[MAX_ITEMS];
    for (int i = 0; i < options->bind_count; i++)
        if ((sources[i] = open(options->binds[i].source, O_PATH | O_CLOEXEC)) < 0)
            fail("opening %s", options->binds[i].source);
    if (options->read_only) make_read_only();
    for (int i = 0; i < options->hide_count; i++) {
        struct stat status;
        if (stat(options->hides[i], &status) < 0) continue; /* nothing there to hide */
        if (S_ISDIR(status.st_mode)) {
            if (mount("tmpfs", options->hides[i], "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m") < 0)
                fail("covering %s", options->hides[i]);
        } else if (mount("/dev/null", options->hides[i], NULL, MS_BIND, NULL) < 0) {
            fail("covering %s", options->hides[i]);
        }
    }
    for (int i = 0; i < options->bind_count; i++) {
        char source[64];
        snprintf(source, sizeof source, "/proc/self/fd/%d", sources[i]);
        make_directories(options->binds[i].target);
        if (mount(source, options->binds[i].target, NULL, MS_BIND | MS_REC, NULL) < 0 ||
            mount(NULL, options->binds[i].target, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, NULL) < 0)
            fail("binding at %s", options->binds[i].target);
        close(sources[i]);
    }
    for (int i = 0; i < options->hide_count; i++) { /* the covers were writable only to make room for binds */
        struct stat status;
        if (stat(options->hides[i], &status) == 0 && S_ISDIR(status.st_mode) &&
            mount(NULL, options->hides[i], NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  NULL) < 0)
            fail("making the cover of %s read-only", options->hides[i]);
    }
    for (int i = 0; i < options->tmpfs_count; i++)
        if (mount("tmpfs", options->tmpfs[i], "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
            fail("mounting a tmpfs at %s", options->tmpfs[i]);
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

/* Become the job: its user, its directory, no new privileges, then its program. */
static void run_program(struct options *options) {
    if (options->switch_user &&
        (setgroups(0, NULL) < 0 || setresgid(options->gid, options->gid, options->gid) < 0 ||
         setresuid(options->uid, options->uid, options->uid) < 0))
        fail("switching to user %d", (int)options->uid);
    if (options->directory && chdir(options->directory) < 0) fail("entering %s", options->directory);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail("giving up privileges");
    reset_signals();
    execvp(options->program[0], options->program);
    dprintf(2, "workerctl: cannot run %s: %s\n", options->program[0], strerror(errno));
    _exit(127);
}

/* PID 1 of the job's namespace: start the program, reap every orphan, and report how the program ended. */
static void run_init(struct options *options, int report_fd) {
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail("mounting /proc");
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

int main(int argc, char **argv) {
    hold_ending_signals(); /* first: until now an ending signal ends this process, before any of the job exists */
    struct options options = {0};
    parse(argc, argv, &options);
    for (int i = 0; i < options.join_count; i++) write_file(options.joins[i], "0");
    if (options.oom_score_adj) write_file("/proc/self/oom_score_adj", options.oom_score_adj);
    if (!options.namespaces) run_program(&options);

    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | (options.network ? CLONE_NEWNET : 0);
    if (unshare(flags) < 0) fail("making namespaces");
    set_up_mounts(&options);
    if (options.hostname && sethostname(options.hostname, strlen(options.hostname)) < 0) fail("naming the host");
    if (options.network) loopback_up();

    int ended = held_ending_signal();
    if (ended) end_as(ended); /* told to end before anything of the job ran: the wait status of that death */
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0) fail("making a pipe");
    pid_t init = fork();
    if (init < 0) fail("starting the job's init");
    if (init == 0) {
        close(report[0]);
        run_init(&options, report[1]);
    }
    close(report[1]);
    pass_on_held_signal();
    /* The supervisor signals every process of the job; this one holds those signals and outlives the rest to
       report how the job ended. */
    int init_status, program_status;
    while (waitpid(init, &init_status, 0) < 0)
        if (errno != EINTR) fail("waiting for the job's init");
    if (read(report[0], &program_status, sizeof program_status) != (ssize_t)sizeof program_status)
        end_as(init_status); /* init ended before the program did: report that instead */
    end_as(program_status);
}
