"""`workerctl completion bash|zsh|fish`: a shell completion script made from the command table.

The script knows the commands (in help's order), a group's commands, each command's options and which of them
take a value, the few values some options and arguments may have (list --status, serve --log-level,
completion's SHELL), and files or directories where an option names one. Completing runs nothing of
workerctl's, so it is instant and needs no server. Options may come before the command, as workerctl allows.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from workerctl.cli.exit_status import ExitStatus
from workerctl.cli.help import GLOBAL_OPTIONS, HELP_OPTION
from workerctl.cli.table import PROGRAM, Argument, Command, Option, in_order, usage_error

SHELLS = ("bash", "zsh", "fish")
_FILE_METAVARS = frozenset({"FILE"})
_DIRECTORY_METAVARS = frozenset({"DIR"})


def with_completion(commands: Sequence[Command]) -> tuple[Command, ...]:
    """`commands` and the completion command, whose scripts complete all of them and itself."""
    def run(shell: str) -> ExitStatus:
        if shell not in SHELLS:
            raise usage_error(f"completion takes {', '.join(SHELLS[:-1])} or {SHELLS[-1]}, not {shell!r}")
        sys.stdout.write(script(every, shell))
        return ExitStatus.OK

    every = (*commands, Command(
        "completion", "print a shell completion script: bash, zsh or fish", run,
        (Argument("shell", "bash, zsh or fish", choices=SHELLS),),
        details=f"bash: source <({PROGRAM} completion bash) in ~/.bashrc. zsh: source <({PROGRAM} completion zsh) "
                f"in ~/.zshrc after compinit. fish: {PROGRAM} completion fish > "
                f"~/.config/fish/completions/{PROGRAM}.fish."))
    return every


def script(commands: Sequence[Command], shell: str) -> str:
    """The completion script for `shell` ("bash", "zsh" or "fish")."""
    writers: dict[str, Callable[[list[Command]], str]] = {"bash": _bash, "zsh": _zsh, "fish": _fish}
    return writers[shell](in_order(commands))


def _flags(option: Option) -> list[str]:
    return [flag for flag in (option.short, option.flag) if flag]


def _valued_flags(commands: list[Command]) -> list[str]:
    """Every flag that takes a value, in any command: the script skips their values to find the command."""
    return sorted({flag for command in commands for option in command.options if not option.is_switch
                   for flag in _flags(option)})


def _two_words(commands: list[Command]) -> str:
    """The names of the commands in a group, as a shell pattern: "users add"|"users list"|..."""
    return "|".join(f'"{command.name}"' for command in commands if len(command.words) == 2) or '""'


class _Context(NamedTuple):
    """Where the cursor may be: after `workerctl` and the command `name` ("" before any), with the options that
    may come next and the words (with what each is) that may."""

    name: str
    options: list[Option]
    words: list[tuple[str, str]]


def _contexts(commands: list[Command]) -> list[_Context]:
    tops = list(dict.fromkeys(command.words[0] for command in commands))
    contexts = [_Context("", list(GLOBAL_OPTIONS), [(top, _top_summary(commands, top)) for top in tops])]
    for top in tops:
        alone = next((command for command in commands if command.words == [top]), None)
        members = [command for command in commands if len(command.words) == 2 and command.words[0] == top]
        words = [(member.words[1], member.summary) for member in members]
        if alone is None:
            contexts.append(_Context(top, [HELP_OPTION], words))
        else:
            contexts.append(_Context(top, [*alone.options, HELP_OPTION], words + _choices(alone)))
        contexts += [_Context(member.name, [*member.options, HELP_OPTION], _choices(member)) for member in members]
    return contexts


def _choices(command: Command) -> list[tuple[str, str]]:
    return [(choice, argument.help) for argument in command.arguments for choice in argument.choices]


def _top_summary(commands: list[Command], top: str) -> str:
    """What a first word does: its command's summary, or for a group alone, its commands."""
    alone = next((command for command in commands if command.words == [top]), None)
    if alone is not None:
        return alone.summary
    members = [command.words[1] for command in commands if len(command.words) == 2 and command.words[0] == top]
    return f"{', '.join(members[:-1])} or {members[-1]} a {top.removesuffix('s')}"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# bash: COMP_WORDS splits `--status=fin` into `--status`, `=`, `fin`, which the script puts together again.

def _bash(commands: list[Command]) -> str:
    arms = [_bash_arm(context.name, context.options, [word for word, _ in context.words])
            for context in _contexts(commands)]
    return f"""# bash completion for {PROGRAM}: `source <({PROGRAM} completion bash)` in ~/.bashrc.
# Made by `{PROGRAM} completion bash` from {PROGRAM}'s own command table.

{_command_finder(commands, 'COMP_WORDS', 'COMP_CWORD', 1)}
_{PROGRAM}() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev= command separated flags= values=
    (( COMP_CWORD > 0 )) && prev=${{COMP_WORDS[COMP_CWORD-1]}}
    if [[ $cur == = ]]; then
        cur=
    elif [[ $prev == = ]] && (( COMP_CWORD > 1 )); then
        prev=${{COMP_WORDS[COMP_CWORD-2]}}
    fi
    _{PROGRAM}_command
    if [[ -n $separated ]]; then  # the job's own command and its arguments
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -f -- "$cur"))
        return 0
    fi
    case $command in
{"".join(arms)}    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$values" -- "$cur"))
    fi
}}

complete -F _{PROGRAM} {PROGRAM}
"""


def _command_finder(commands: list[Command], words: str, current: str, first: int) -> str:
    """The shell function that finds the command on the line, in what bash and zsh both read: the words are in
    the array `words`, from index `first`, and the cursor is at index `current`."""
    return f"""_{PROGRAM}_command() {{
    # Sets command to what the words before the cursor name ("list", "users add"), and separated to 1 after --.
    local i={first} word
    command= separated=
    while (( i < {current} )); do
        word=${{{words}[i]}}
        case $word in
            --) separated=1; return ;;
            -*) if [[ $word != *=* && " {" ".join(_valued_flags(commands))} " == *" $word "* ]]; then
                    (( i++ ))
                    [[ ${{{words}[i]}} == "=" ]] && (( i++ ))  # bash splits --name=value at the =
                fi ;;
            *) if [[ -z $command ]]; then
                   command=$word
               elif [[ $command != *" "* ]]; then
                   case "$command $word" in
                       {_two_words(commands)}) command="$command $word" ;;
                   esac
               fi ;;
        esac
        (( i++ ))
    done
}}
"""


def _bash_arm(name: str, options: list[Option], values: list[str]) -> str:
    cases = _value_cases(options, "                ", {
        "choices": lambda option: f'COMPREPLY=($(compgen -W "{" ".join(option.choices)}" -- "$cur")); return 0',
        "file": lambda _: 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return 0',
        "directory": lambda _: 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")); return 0',
        "text": lambda _: "return 0",  # a value to type: nothing to offer
    })
    flags = " ".join(flag for option in options for flag in _flags(option))
    prev_case = f"            case $prev in\n{cases}            esac\n" if cases else ""
    return (f'        "{name}")\n{prev_case}            flags="{flags}"\n'
            f'            values="{" ".join(values)}" ;;\n')


def _value_cases(options: list[Option], indent: str, actions: dict[str, Callable[[Option], str]]) -> str:
    """The arms of a shell `case` on the option before the cursor, one per option that takes a value: the action
    for its kind of value (a few choices, a file, a directory, or text to type)."""
    arms = []
    for option in options:
        if option.is_switch:
            continue
        kind = ("choices" if option.choices else "file" if option.metavar in _FILE_METAVARS
                else "directory" if option.metavar in _DIRECTORY_METAVARS else "text")
        arms.append(f"{indent}{'|'.join(_flags(option))}) {actions[kind](option)} ;;\n")
    return "".join(arms)


# zsh: with compinit, words holds the command line and CURRENT the index of the word at the cursor.

def _zsh(commands: list[Command]) -> str:
    arms = [_zsh_arm(context.name, context.options, context.words) for context in _contexts(commands)]
    return f"""#compdef {PROGRAM}
# zsh completion for {PROGRAM}: `source <({PROGRAM} completion zsh)` in ~/.zshrc after compinit, or save it
# as _{PROGRAM} in a directory of $fpath. Made by `{PROGRAM} completion zsh` from {PROGRAM}'s own command table.

{_command_finder(commands, 'words', 'CURRENT', 2)}
_{PROGRAM}() {{
  local command separated option= cur=${{words[CURRENT]}}
  local -a flags values
  _{PROGRAM}_command
  if [[ -n $separated ]]; then  # the job's own command and its arguments
    _files
    return
  fi
  if [[ $cur == -*=* ]]; then
    option=${{cur%%=*}}
    compset -P '*='
  elif (( CURRENT > 2 )); then
    option=${{words[CURRENT-1]}}
  fi
  case $command in
{"".join(arms)}  esac
  if [[ $cur == -* ]]; then
    _describe -t options option flags
  else
    _describe -t values argument values
  fi
}}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _{PROGRAM} "$@"
else
  compdef _{PROGRAM} {PROGRAM}
fi
"""


def _zsh_arm(name: str, options: list[Option], values: list[tuple[str, str]]) -> str:
    cases = _value_cases(options, "        ", {
        "choices": lambda option: f"compadd -- {' '.join(option.choices)}; return",
        "file": lambda _: "_files; return",
        "directory": lambda _: "_files -/; return",
        "text": lambda option: f"_message {_zsh_quote(option.metavar or option.name.upper())}; return",
    })
    option_case = f"      case $option in\n{cases}      esac\n" if cases else ""
    flags = " ".join(_zsh_quote(f"{flag}:{_one_line(option.help)}") for option in options for flag in _flags(option))
    described = " ".join(_zsh_quote(f"{value}:{_one_line(text)}") for value, text in values)
    return f'    ("{name}")\n{option_case}      flags=({flags})\n      values=({described}) ;;\n'


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# fish: `complete` rules, each with a condition on the command the words so far name.

def _fish(commands: list[Command]) -> str:
    valued = " ".join(_valued_flags(commands))
    groups = " ".join(dict.fromkeys(command.words[0] for command in commands if len(command.words) == 2))
    lines = [f"complete -c {PROGRAM} -f",
             f"complete -c {PROGRAM} -n '__{PROGRAM}_is \"--\"' -F"]
    for context in _contexts(commands):
        condition = f"-n '__{PROGRAM}_is \"{context.name}\"'"
        lines += [f"complete -c {PROGRAM} {condition} -a {_fish_quote(word)} -d {_fish_quote(_one_line(text))}"
                  for word, text in context.words]
        lines += [_fish_option(condition, option) for option in context.options]
    rules = "\n".join(lines)
    return f"""# fish completion for {PROGRAM}: `{PROGRAM} completion fish > ~/.config/fish/completions/{PROGRAM}.fish`.
# Made by `{PROGRAM} completion fish` from {PROGRAM}'s own command table.

function __{PROGRAM}_command --description 'What the words before the cursor name: list, users add, or -- after --'
    set -l words (commandline -opc)
    set -e words[1]
    set -l command
    set -l skip 0
    for word in $words
        if test $skip = 1
            set skip 0
            continue
        end
        switch $word
            case --
                echo --
                return
            case '-*'
                if not string match -q -- '*=*' $word; and contains -- $word {valued}
                    set skip 1
                end
            case '*'
                if test -z "$command"
                    set command $word
                else if not string match -q -- '* *' $command; and contains -- $command {groups or '""'}
                    set command "$command $word"
                end
        end
    end
    echo $command
end

function __{PROGRAM}_is --description 'Whether the words before the cursor name this command'
    set -l command (__{PROGRAM}_command)
    test "$command" = "$argv[1]"
end

{rules}
"""


def _fish_option(condition: str, option: Option) -> str:
    rule = f"complete -c {PROGRAM} {condition} -l {option.name}"
    if option.short:
        rule += f" -s {option.short.lstrip('-')}"
    if option.choices:
        rule += f" -x -a {_fish_quote(' '.join(option.choices))}"
    elif option.metavar in _FILE_METAVARS | _DIRECTORY_METAVARS:
        rule += " -r -F"
    elif not option.is_switch:
        rule += " -x"
    return f"{rule} -d {_fish_quote(_one_line(option.help))}"


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
