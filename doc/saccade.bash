# bash completion for saccade(1): subcommands, their options (read from `saccade COMMAND --help`
# once per shell, so they never go stale), and file names where an option takes a file.
_saccade() {
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]} words=("${COMP_WORDS[@]}") cword=$COMP_CWORD
    fi
    local commands="caption attend batch train eval score import classify report help"
    if [ "$cword" -eq 1 ]; then
        COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
        return
    fi
    local cmd=${words[1]}
    case $cmd in
    help) [ "$cword" -eq 2 ] && COMPREPLY=($(compgen -W "$commands" -- "$cur")); return ;;
    caption | attend | batch | train | eval | score | import | classify | report) ;;
    *) return ;;
    esac
    case $prev in
    --beam | --nbest | --max-len | --len-norm | --threads | --panel | --columns | --batch | --top | \
        --epochs | --lr | --lr-encoder | --lr-decay | --clip | --weight-decay | --patience | --seed | \
        --max-steps | --min-count | --image-size | --att | --hidden | --embed | --dropout | --lambda | \
        --caps-per-image | --checkpoint-every | --eval-beam | --eval-max | --max-images | --max-photos | \
        --scst-samples | --proj | --title | --license | --shard | --train-split | --dev-split | --split | \
        --conv)
        return ;;
    --grid) COMPREPLY=($(compgen -W "7 14" -- "$cur")); return ;;
    --select) COMPREPLY=($(compgen -W "cider bleu4" -- "$cur")); return ;;
    --scst-baseline) COMPREPLY=($(compgen -W "greedy mean" -- "$cur")); return ;;
    --scst-sample) COMPREPLY=($(compgen -W "multinomial beam" -- "$cur")); return ;;
    --format) COMPREPLY=($(compgen -W "jsonl tsv coco html" -- "$cur")); return ;;
    --images | --data)
        COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null; return ;;
    --model | --backbone | --init | --out | -o | --output | --html | --results | --refs | --labels | \
        --log | --report | --checkpoint | --font)
        COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null; return ;;
    --json) # a file for attend, a flag elsewhere
        if [ "$cmd" = attend ]; then
            COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null; return
        fi ;;
    esac
    if [[ $cur == -* ]]; then
        local var=_saccade_opts_$cmd
        if [ -z "${!var}" ]; then
            printf -v "$var" '%s' "$("${words[0]}" "$cmd" --help 2>/dev/null | grep -o -- '--[a-z0-9][a-z0-9-]*' | sort -u | tr '\n' ' ')"
        fi
        COMPREPLY=($(compgen -W "${!var} -h" -- "$cur"))
        return
    fi
    COMPREPLY=($(compgen -f -- "$cur"))
    compopt -o filenames 2>/dev/null
}
complete -F _saccade saccade
