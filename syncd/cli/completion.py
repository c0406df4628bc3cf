"""Shell completion scripts (bash, zsh, fish), written from the parser so they never drift from
it. Workspace ids come from `syncd __complete-workspaces`, which reads the config, or the server
when --server (or $SYNCD_SERVER) is set; the global options on the line are passed along."""

from __future__ import annotations

import argparse
import shlex

GLOBAL_WITH_VALUE = (
    "--config",
    "--server",
    "--token-file",
    "--ca-file",
    "--deadline",
    "--max-answer",
)
FILE_OPTIONS = ("--config", "--token-file", "--ca-file", "--dir")


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {n: p for n, p in action.choices.items() if not n.startswith("__")}
    return {}


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def _options(cmd: argparse.ArgumentParser) -> list[str]:
    return [o for a in cmd._actions for o in a.option_strings if o.startswith("--")]


def _takes_workspace(cmd: argparse.ArgumentParser) -> bool:
    return any(a.dest in ("workspace", "workspaces") for a in cmd._actions)


def _choices(cmd: argparse.ArgumentParser) -> list[str]:
    """The choices of a positional argument (`completion SHELL`)."""
    return [str(c) for a in cmd._actions if not a.option_strings for c in (a.choices or ())]


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    commands = _commands(parser)
    return {"bash": _bash, "zsh": _zsh, "fish": _fish}[shell](parser, commands)


def _bash(parser: argparse.ArgumentParser, cmds: dict[str, argparse.ArgumentParser]) -> str:
    top = " ".join([*cmds, *_options(parser)])
    option_cases = "\n".join(
        f'      {name}) words_="{" ".join(_options(cmd))}";;' for name, cmd in cmds.items()
    )
    ws_cmds = "|".join(n for n, c in cmds.items() if _takes_workspace(c)) or "__none"
    choice_cases = "\n".join(
        f'    {n}) COMPREPLY=($(compgen -W "{" ".join(_choices(c))}" -- "$cur"));;'
        for n, c in cmds.items()
        if _choices(c)
    )
    return f"""# bash completion for syncd: eval "$(syncd completion bash)"
_syncd() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  local cmd="" i words_ opts=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${{COMP_WORDS[i]}}" in
      {"|".join(GLOBAL_WITH_VALUE)}) opts+=("${{COMP_WORDS[i]}}" "${{COMP_WORDS[i+1]}}"); ((i++));;
      -*) ;;
      *) [[ -z "$cmd" ]] && cmd="${{COMP_WORDS[i]}}";;
    esac
  done
  case "$prev" in
    {"|".join(FILE_OPTIONS)}) COMPREPLY=($(compgen -f -- "$cur")); return;;
  esac
  if [[ -z "$cmd" ]]; then
    COMPREPLY=($(compgen -W "{top}" -- "$cur")); return
  fi
  if [[ "$cur" == -* ]]; then
    case "$cmd" in
{option_cases}
      *) words_="";;
    esac
    COMPREPLY=($(compgen -W "$words_" -- "$cur")); return
  fi
  case "$cmd" in
    {ws_cmds}) COMPREPLY=($(compgen -W "$(syncd "${{opts[@]}}" __complete-workspaces \\
        2>/dev/null)" -- "$cur"));;
{choice_cases}
  esac
}}
complete -F _syncd syncd
"""


def _zsh(parser: argparse.ArgumentParser, cmds: dict[str, argparse.ArgumentParser]) -> str:
    helps = _helps(parser)
    described = " ".join(shlex.quote(f"{n}:{helps.get(n, '').replace(':', ' ')}") for n in cmds)
    option_cases = "\n".join(
        f"      ({name}) compadd -- {' '.join(_options(cmd))};;" for name, cmd in cmds.items()
    )
    ws_cmds = "|".join(n for n, c in cmds.items() if _takes_workspace(c)) or "__none"
    choice_cases = "\n".join(
        f"    ({n}) compadd -- {' '.join(_choices(c))};;" for n, c in cmds.items() if _choices(c)
    )
    return f"""#compdef syncd
# zsh completion for syncd: after compinit, source <(syncd completion zsh)
_syncd() {{
  local cmd="" i
  local -a opts commands
  commands=({described})
  for ((i = 2; i < CURRENT; i++)); do
    case "${{words[i]}}" in
      ({"|".join(GLOBAL_WITH_VALUE)}) opts+=("${{words[i]}}" "${{words[i+1]}}"); ((i++));;
      (-*) ;;
      (*) [[ -z "$cmd" ]] && cmd="${{words[i]}}";;
    esac
  done
  case "${{words[CURRENT-1]}}" in
    ({"|".join(FILE_OPTIONS)}) _files; return;;
  esac
  if [[ -z "$cmd" ]]; then
    if [[ "${{words[CURRENT]}}" == -* ]]; then
      compadd -- {" ".join(_options(parser))}
    else
      _describe 'command' commands
    fi
    return
  fi
  if [[ "${{words[CURRENT]}}" == -* ]]; then
    case "$cmd" in
{option_cases}
    esac
    return
  fi
  case "$cmd" in
    ({ws_cmds}) compadd -- ${{(f)"$(syncd "${{opts[@]}}" __complete-workspaces 2>/dev/null)"}};;
{choice_cases}
  esac
}}
compdef _syncd syncd
"""


def _fish(parser: argparse.ArgumentParser, cmds: dict[str, argparse.ArgumentParser]) -> str:
    helps = _helps(parser)
    lines = [
        "# fish completion for syncd: syncd completion fish | source",
        "function __syncd_workspaces",
        "    set -l words (commandline -opc)",
        "    set -l opts",
        "    for i in (seq 2 (count $words))",
        f"        if contains -- $words[$i] {' '.join(GLOBAL_WITH_VALUE)}",
        "            and test $i -lt (count $words)",
        "            set opts $opts $words[$i] $words[(math $i + 1)]",
        "        end",
        "    end",
        "    syncd $opts __complete-workspaces 2>/dev/null",
        "end",
        "complete -c syncd -f",
    ]
    for opt in _options(parser):
        lines.append(f"complete -c syncd -n __fish_use_subcommand -l {opt[2:]} -r")
    for name, cmd in cmds.items():
        desc = shlex.quote(helps.get(name, ""))
        lines.append(f"complete -c syncd -n __fish_use_subcommand -a {name} -d {desc}")
        seen = f"'__fish_seen_subcommand_from {name}'"
        for opt in _options(cmd):
            lines.append(f"complete -c syncd -n {seen} -l {opt[2:]}")
        if _takes_workspace(cmd):
            lines.append(f"complete -c syncd -n {seen} -a '(__syncd_workspaces)'")
        if _choices(cmd):
            lines.append(f"complete -c syncd -n {seen} -a '{' '.join(_choices(cmd))}'")
    return "\n".join(lines) + "\n"
