#!/usr/bin/env bash
# dev_samples.sh MODEL [N] - a markdown table of the model's captions for the first N (10) Flickr8k
# dev images next to their first reference caption, for the model card.
set -euo pipefail
model=$1
n=${2:-10}
data=${FLICKR8K:-../shared/data/flickr8k}
saccade=${SACCADE:-build/tools/saccade}
echo "| image | saccade (beam 3) | first reference |"
echo "|---|---|---|"
head -n "$n" "$data/Flickr_8k.devImages.txt" | while read -r img; do
    cap=$("$saccade" caption --model "$model" --quiet "$data/images/$img" | cut -f2)
    ref=$(grep -m1 -F "$img#0" "$data/Flickr8k.token.txt" | cut -f2 | sed 's/ *\.$//')
    echo "| $img | $cap | $ref |"
done
