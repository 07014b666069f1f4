#!/usr/bin/env bash
# How samples/rotterdam-pilot-standup.m4a was made: a fictional stand-up read by two
# espeak-ng voices (apt-get install espeak-ng ffmpeg), mixed to mono AAC. Not run by make;
# kept so the recording can be rebuilt or changed. Hidden folder: `imp ingest samples/` skips it.
set -euo pipefail
out=${1:-samples/rotterdam-pilot-standup.m4a}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
i=0
say() {  # voice, pitch, text
  i=$((i + 1))
  espeak-ng -v "$1" -p "$2" -s 145 -w "$tmp/$(printf %02d $i).wav" "$3"
  ffmpeg -v error -f lavfi -i anullsrc=r=22050:cl=mono -t 0.7 "$tmp/$(printf %02d $i)z.wav"
}
A="en-us+klatt 30"  # Lena, the pilot lead: voice and pitch
B="en-us+f3 70"  # Jonas, site engineer
say $A "Good morning. This is the weekly stand-up for the warehouse pilot at the Rotterdam site."
say $B "The pilot started on Monday with four robots. In the first week they moved eleven hundred totes, and the pick error rate dropped to half a percent."
say $A "Good news. What about the charging stations?"
say $B "Two of the six stations overheat in the afternoon. The facilities team will add ventilation next Tuesday."
say $A "Decision: we keep the pilot running until the end of June, and we add two more robots in May."
say $A "Action item for Jonas: order the two extra robots by Friday."
say $B "Agreed. I will also send the weekly pilot report to the customer every Monday."
ls "$tmp"/*.wav | sort | sed "s/.*/file '&'/" > "$tmp/list.txt"
ffmpeg -v error -y -f concat -safe 0 -i "$tmp/list.txt" -ac 1 -ar 16000 -c:a aac -b:a 32k "$out"
