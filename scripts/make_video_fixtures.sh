#!/usr/bin/env bash
# Makes the small real video files the decoding tests read (fixtures/video/files/) and their manifest.
#
#   ./scripts/make_video_fixtures.sh [OUT_DIR]      (default: fixtures/video/files)
#
# Needs the ffmpeg CLI with libx264, libvpx-vp9 and the native AAC encoder (Debian 12: `apt-get install
# ffmpeg`). Everything is synthetic (lavfi sources) and encoded single-threaded with bit-exact flags and no
# metadata, so the same ffmpeg build makes the same bytes; the committed files were made by Debian 12's
# ffmpeg 5.1.x (the manifest records the version and every file's sha256; another build may encode
# different bytes, which is fine as long as the tests pass on them).
#
# Every video frame carries its own index: the top third of the frame is 8 vertical bars, bar k (from
# the left) white when bit k of the source frame number is set, black otherwise; testsrc2's moving
# pattern fills the rest so the encoders have real work. Reading the bars back from the decoded frames
# shows which source frame came out where (tests/video_decode.rs).
#
# manifest.json: one entry per file with its sha256 and size in bytes; for the videos also what
# `ffprobe -count_frames` says about the first video stream (codec, width, height, pixel format, average
# frame rate, number of decoded frames), whether decode order differs from presentation order, and the
# source frame numbers in presentation order.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-fixtures/video/files}
mkdir -p "$out"

ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
# no container metadata, no encoder version strings, no random ids
bitexact=(-fflags +bitexact -flags:v +bitexact -flags:a +bitexact -map_metadata -1 -map_chapters -1)

# The index bars over testsrc2 (W x H at RATE fps), as a lavfi graph; geq's N is the source frame number.
pattern() {
    local size=$1 rate=$2
    local bars="if(lt(Y\,H/3)\,255*mod(floor(N/pow(2\,floor(X*8/W)))\,2)"
    printf '%s' "testsrc2=size=${size}:rate=${rate},format=gbrp,geq=r='${bars}\,r(X\,Y))':g='${bars}\,g(X\,Y))':b='${bars}\,b(X\,Y))'"
}

# H.264 (libx264, 4:2:0 unless a pixel format is given). Args: file size rate frames x264-params [pix_fmt]
h264() {
    local file=$1 size=$2 rate=$3 frames=$4 params=$5 pix=${6:-yuv420p}
    ff -f lavfi -i "$(pattern "$size" "$rate")" -frames:v "$frames" \
        -c:v libx264 -threads 1 -preset medium -crf 20 -pix_fmt "$pix" -x264-params "$params" \
        "${bitexact[@]}" -movflags +faststart "$out/$file"
}
# VP9 (libvpx, 4:2:0; odd sizes are legal in VP9). Args: file size rate frames
vp9() {
    local file=$1 size=$2 rate=$3 frames=$4
    ff -f lavfi -i "$(pattern "$size" "$rate")" -frames:v "$frames" \
        -c:v libvpx-vp9 -threads 1 -row-mt 0 -deadline good -cpu-used 4 -crf 30 -b:v 0 -g 12 \
        -pix_fmt yuv420p "${bitexact[@]}" "$out/$file"
}

# A fixed B-frame pattern (I B B P ...) so decode order differs from presentation order.
bframes=bframes=2:b-adapt=0:keyint=20:min-keyint=20:scenecut=0

# --- good videos -----------------------------------------------------------------------------------
h264 h264_160x90_bframes.mp4 160x90 25 40 "$bframes"
h264 h264_portrait_90x160.mp4 90x160 30 24 "$bframes"
h264 h264_1_frame_64x48.mp4 64x48 25 1 "$bframes"
h264 h264_3_frames_64x48.mp4 64x48 25 3 "$bframes"
# odd sizes: 4:2:0 H.264 cannot code odd widths or heights, 4:4:4 (High 4:4:4 profile) can
h264 h264_yuv444_97x61.mp4 97x61 24 20 "$bframes" yuv444p
# full-range ("JPEG") 4:2:0: the decoder outputs yuvj420p
h264 h264_fullrange_96x64.mp4 96x64 25 20 "$bframes" yuvj420p
vp9 vp9_97x61.webm 97x61 25 30
vp9 vp9_portrait_61x97.webm 61x97 30 30
vp9 vp9_3_frames_97x61.webm 97x61 25 3

# Variable frame rate: from 30 fps source frames, every third one (n = 2, 5, 8, ...) is dropped and the
# rest keep their timestamps, so frame durations alternate 1/30 s and 2/30 s.
ff -f lavfi -i "$(pattern 128x72 30),select='not(eq(mod(n\,3)\,2))'" -frames:v 30 -fps_mode vfr \
    -c:v libx264 -threads 1 -preset medium -crf 20 -pix_fmt yuv420p -x264-params "$bframes" \
    "${bitexact[@]}" -movflags +faststart "$out/h264_vfr_128x72.mp4"

# Audio first: stream 0 is AAC, stream 1 the video (the decoder must pick the first *video* stream).
ff -f lavfi -i "sine=frequency=440:sample_rate=16000:duration=1" -f lavfi -i "$(pattern 96x64 25)" \
    -map 0:a -map 1:v -frames:v 25 -t 1 -c:a aac -b:a 24k \
    -c:v libx264 -threads 1 -preset medium -crf 20 -pix_fmt yuv420p -x264-params "$bframes" \
    "${bitexact[@]}" -movflags +faststart "$out/h264_audio_first_96x64.mp4"

# Timestamps the decoder's output order does not follow: the B-frame file remuxed into Matroska with
# its packet timestamps rewritten (setts; dts kept increasing). The official loader orders frames by pts.
# reversed: the packet in decode position N gets pts 39 - N, so presentation order is neither the
# decoder's output order nor the source order;
ff -i "$out/h264_160x90_bframes.mp4" -c copy -bsf:v "setts=pts=(39-N)*512:dts=(N-40)*512" "${bitexact[@]}" \
    "$out/h264_pts_reversed.mkv"
# repeated: packets 2k and 2k+1 share one pts, so 40 decoded frames have 20 distinct timestamps (the
# official `frames[frame.pts] = frame` keeps the later decoded frame of each pair).
ff -i "$out/h264_160x90_bframes.mp4" -c copy -bsf:v "setts=pts=floor(N/2)*1024:dts=NOPTS" "${bitexact[@]}" \
    "$out/h264_pts_repeated.mkv"

# --- bad files -------------------------------------------------------------------------------------
# truncated: the first 60 % of good files (mp4 with its index up front, so the cut falls in the media data)
cut_to() { head -c "$(($(stat -c %s "$out/$1") * 60 / 100))" "$out/$1" > "$out/$2"; }
cut_to h264_160x90_bframes.mp4 truncated.mp4
cut_to vp9_97x61.webm truncated.webm
# corrupt: a good mp4 whose first 4 KiB (file type box and the whole index) are overwritten with zeros
cp "$out/h264_160x90_bframes.mp4" "$out/corrupt.mp4"
dd if=/dev/zero of="$out/corrupt.mp4" bs=4096 count=1 conv=notrunc status=none
# audio only: one second of AAC in an mp4, no video stream
ff -f lavfi -i "sine=frequency=440:sample_rate=16000:duration=1" -c:a aac -b:a 24k "${bitexact[@]}" \
    "$out/audio_only.mp4"
# empty: zero bytes
: > "$out/empty.mp4"

# --- manifest --------------------------------------------------------------------------------------
probe() { # file entry -> value of the first video stream's field
    ffprobe -v error -count_frames -select_streams v:0 -show_entries "stream=$2" -of default=nw=1:nk=1 "$out/$1"
}
# the source frame numbers the index bars of a file carry, in presentation order (null: see
# pyav_reference.json, which reads them from the frames the official loader returns)
sources() {
    case $1 in
        h264_vfr_128x72.mp4) printf '[%s]' "$(seq 0 44 | awk '$1 % 3 != 2' | paste -sd,)" ;;
        h264_pts_*) printf null ;;
        *) printf '[%s]' "$(seq 0 $(($2 - 1)) | paste -sd,)" ;;
    esac
}
# whether the packets' pts in file (decode) order are not increasing: presentation order differs from
# decode order (B-frames or rewritten timestamps)
reordered() {
    ffprobe -v error -select_streams v:0 -show_entries packet=pts -of csv=p=0 "$out/$1" |
        awk 'NR > 1 && $1 <= last { r = 1 } { last = $1 } END { print (r ? "true" : "false") }'
}
{
    printf '{\n  "made_by": "scripts/make_video_fixtures.sh",\n'
    printf '  "ffmpeg": "%s",\n  "files": [\n' "$(ffmpeg -hide_banner -version | head -1 | cut -d' ' -f3)"
    first=1
    for path in $(ls "$out" | grep -v -E '\.(json|md)$' | sort); do
        [ $first = 1 ] || printf ',\n'
        first=0
        bytes=$(stat -c %s "$out/$path")
        sha=$(sha256sum "$out/$path" | cut -d' ' -f1)
        printf '    {"file": "%s", "bytes": %d, "sha256": "%s"' "$path" "$bytes" "$sha"
        case $path in
            truncated.* | corrupt.* | audio_only.* | empty.*) printf ', "video": null}' ;;
            *)
                frames=$(probe "$path" nb_read_frames)
                printf ', "video": {"codec": "%s", "width": %d, "height": %d, "pix_fmt": "%s", "avg_frame_rate": "%s", "frames": %d, "reordered": %s, "sources": %s}}' \
                    "$(probe "$path" codec_name)" "$(probe "$path" width)" "$(probe "$path" height)" \
                    "$(probe "$path" pix_fmt)" "$(probe "$path" avg_frame_rate)" "$frames" "$(reordered "$path")" \
                    "$(sources "$path" "$frames")"
                ;;
        esac
    done
    printf '\n  ]\n}\n'
} > "$out/manifest.json"
du -cb "$out"/* | tail -1 >&2
