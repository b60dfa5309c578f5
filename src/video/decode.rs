//! Decoding real video files (feature `video`): every frame of the first video stream, in
//! presentation order, as RGB — the frames the official ST-Adapter loader gets from PyAV.
//!
//! What the official loader does (linziyi96/st-adapter, `video_dataset/dataset.py`,
//! `VideoDataset.__getitem__`, with PyAV 10.0.0 from its `environment.yml`):
//! ```text
//! container = av.open(io.BytesIO(raw_data))
//! container.streams.video[0].thread_count = 1
//! frames = {}
//! for frame in container.decode(video=0):      # every frame of the first video stream
//!     frames[frame.pts] = frame                 # keyed by presentation timestamp
//! frames = [frames[k] for k in sorted(frames.keys())]
//! ... frames[x].to_rgb().to_ndarray() ...       # only for the sampled x (training) or all (test)
//! ```
//! We do the same with the same libraries: libavformat/libavcodec open and decode (one decoder
//! thread), frames are ordered by their `pts` (a later frame with the same `pts` replaces the earlier
//! one, as in the dict), and the RGB conversion is PyAV 10's `to_rgb()`: one libswscale context from
//! the decoded pixel format to `rgb24` at the same size with `SWS_BILINEAR` and swscale's default
//! colour details (PyAV 10 sets none: BT.601 matrix; the range follows the pixel format, full for
//! `yuvj*`, limited otherwise). With PyAV 10.0.0 built against the same ffmpeg (Debian 12's 5.1) our
//! RGB bytes are identical to PyAV's on every fixture video (tests/video_decode.rs). Other ffmpeg
//! versions convert some frames differently: PyAV 18.1 (bundling ffmpeg 8.0) gives the same bytes on
//! every H.264 fixture but differs on the odd-sized 4:2:0 VP9 ones (up to 122 levels, mean 0.6–1.3,
//! 16 % of values), because libswscale changed, not the decoder (the decoded YUV planes are identical).
//!
//! We use video-rs only for setting up ffmpeg (and its logging, which goes to `tracing`, so nothing is
//! printed); the decoding itself uses the ffmpeg-next bindings video-rs re-exports, because video-rs's
//! `Decoder` cannot give what the official loader gets: it stamps frames with the packet's *decode*
//! timestamp (so frames cannot be ordered by `pts`), it converts every frame to RGB (no way to skip the
//! frames nobody samples) with `SWS_AREA` flags (PyAV: `SWS_BILINEAR`), and its frame count and duration
//! (the container's) and `seek_to_frame` (which takes the frame number as a time) are not exact.
//!
//! Departures from the official loader, each where it happens:
//! - a frame without a `pts` is placed by its best-effort timestamp (PyAV gives `None`: the dict would
//!   merge all such frames into one, or `sorted` would fail); if a frame has neither, every frame keeps
//!   its decode order;
//! - attached pictures (cover art) are not video: an audio file with cover art has no video stream here
//!   (PyAV's `streams.video[0]` would be the cover);
//! - a Matroska/WebM file shorter than its header declares is an error (PyAV and ffmpeg decode the
//!   frames before the cut and say nothing); an MP4 cut short fails in libavformat as in PyAV (a packet
//!   cut short, or samples past the end of the file).
//!
//! Damage inside readable data is not an error, as in PyAV: the decoder conceals broken H.264 slices, and
//! the Matroska demuxer skips a damaged cluster and resumes at the next one (a WebM with 300 random bytes
//! in the middle decodes to 19 of its 30 frames in PyAV and here alike; only ffmpeg's log says so).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use video_rs::ffmpeg;

use super::Frame;

/// What decoding a file found out about its first video stream.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    /// Frames in presentation order: the official loader's `len(frames)` (distinct `pts`).
    pub frames: usize,
    /// Frames the decoder returned: `ffprobe -count_frames`'s `nb_read_frames`. Equal to `frames`
    /// unless two frames share a `pts`.
    pub decoded_frames: usize,
    /// Decoded frame size in pixels (the coded size after cropping; sample aspect ratio and rotation
    /// metadata are ignored, as in PyAV).
    pub width: usize,
    pub height: usize,
    /// The stream's average frame rate (`avg_frame_rate`, else `r_frame_rate`; 0 when unknown).
    pub fps: f64,
    /// Decoder name, e.g. `h264`, `vp9`.
    pub codec: String,
    /// Pixel format of the decoded frames, e.g. `yuv420p`.
    pub pix_fmt: String,
    /// Index of the stream in the file (the first video stream).
    pub stream_index: usize,
}

/// A decoded video: its [`VideoInfo`] and the frames asked for, as `(index, frame)` in index order,
/// where `index` counts frames in presentation order from 0.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub info: VideoInfo,
    pub frames: Vec<(usize, Frame)>,
}

/// Decoding `path` failed: the file and what failed.
#[derive(Debug, thiserror::Error)]
#[error("{}: {failure}", path.display())]
pub struct DecodeError {
    pub path: PathBuf,
    pub failure: Failure,
}

/// What failed (the file is named by [`DecodeError`]).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error("ffmpeg cannot open a path that is not UTF-8 without NUL bytes")]
    Path,
    #[error("ffmpeg could not be initialised: {0}")]
    Init(String),
    #[error("not a readable media file: {0}")]
    Open(ffmpeg::Error),
    #[error("no video stream (the file has: {0})")]
    NoVideoStream(String),
    #[error("cannot open a decoder for video stream {stream} ({codec}): {source}")]
    Codec { stream: usize, codec: String, source: ffmpeg::Error },
    #[error("truncated: its Matroska segment ends at byte {declared_end} but the file has {file_len} bytes")]
    Truncated { declared_end: u64, file_len: u64 },
    #[error("reading the file failed after {packet} video packets: {source}")]
    Demux { packet: usize, source: ffmpeg::Error },
    #[error("packet {packet} of the video stream is cut short (the file is probably truncated)")]
    CorruptPacket { packet: usize },
    #[error("decoding packet {packet} of the video stream failed: {source}")]
    Decode { packet: usize, source: ffmpeg::Error },
    #[error("the video stream decodes to no frames")]
    NoFrames,
    #[error("decoded frame {frame} is {width}x{height} but the first frame is {first_width}x{first_height}")]
    SizeChanged { frame: usize, width: usize, height: usize, first_width: usize, first_height: usize },
    #[error("converting decoded frame {frame} from {pix_fmt} to RGB failed: {source}")]
    Convert { frame: usize, pix_fmt: String, source: ffmpeg::Error },
    #[error("a second decoding pass returned {second} frames, the first {first}")]
    Unstable { first: usize, second: usize },
}

type Result<T> = std::result::Result<T, Failure>;

/// Decodes the whole first video stream of `path` without converting any frame: the exact frame count
/// and the stream's facts. (Counting packets or trusting the container's frame count is not exact.)
pub fn probe(path: impl AsRef<Path>) -> std::result::Result<VideoInfo, DecodeError> {
    decode(path, Some(&BTreeSet::new())).map(|d| d.info)
}

// ANCHOR: decode
/// Decodes every frame of the first video stream of `path` in presentation order and returns the
/// frames whose index is in `keep` (all when `None`) as RGB. Frames not kept are still decoded (later
/// frames are predicted from them) but not converted, so the kept frames are exactly those of a full
/// decode. Indices in `keep` past the last frame are ignored.
pub fn decode(path: impl AsRef<Path>, keep: Option<&BTreeSet<usize>>) -> std::result::Result<Decoded, DecodeError> {
    let path = path.as_ref();
    decode_inner(path, keep).map_err(|failure| DecodeError { path: path.to_path_buf(), failure })
}
// ANCHOR_END: decode

fn decode_inner(path: &Path, keep: Option<&BTreeSet<usize>>) -> Result<Decoded> {
    let file_len = std::fs::metadata(path)?.len();
    if file_len == 0 {
        return Err(Failure::Empty);
    }
    init()?;
    // Pass 1 converts the frames whose *decode* position is in `keep`: right whenever the decoder
    // returns frames in presentation order, as it does for well-formed files.
    let wanted = |ordinal: usize| keep.is_none_or(|k| k.contains(&ordinal));
    let first = Pass::run(path, file_len, wanted)?;
    let order = presentation_order(&first.keys);
    let in_order = order.iter().enumerate().all(|(ordinal, index)| *index == Some(ordinal));
    let pass = if in_order || keep.is_none() {
        first
    } else {
        // Out of order (or a repeated pts): decode again, now knowing each frame's index.
        let wanted =
            |ordinal: usize| order.get(ordinal).copied().flatten().is_some_and(|i| keep.is_none_or(|k| k.contains(&i)));
        let second = Pass::run(path, file_len, wanted)?;
        if second.keys != first.keys {
            return Err(Failure::Unstable { first: first.keys.len(), second: second.keys.len() });
        }
        second
    };
    let mut frames: Vec<(usize, Frame)> =
        pass.rgb.into_iter().filter_map(|(ordinal, frame)| order[ordinal].map(|index| (index, frame))).collect();
    frames.sort_by_key(|(index, _)| *index);
    let info = VideoInfo {
        frames: order.iter().flatten().count(),
        decoded_frames: pass.keys.len(),
        width: pass.width,
        height: pass.height,
        fps: pass.fps,
        codec: pass.codec,
        pix_fmt: pass.pix_fmt,
        stream_index: pass.stream_index,
    };
    Ok(Decoded { info, frames })
}

/// The versions of the ffmpeg libraries that decode and convert, as `major.minor.micro` (e.g. Debian
/// 12: libavcodec 59.37.100, libswscale 6.7.100). RGB bytes are only comparable between equal versions.
pub fn library_versions() -> Vec<(&'static str, String)> {
    let v = |n: u32| format!("{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff);
    vec![
        ("libavcodec", v(ffmpeg::codec::version())),
        ("libavformat", v(ffmpeg::format::version())),
        ("libavutil", v(ffmpeg::util::version())),
        ("libswscale", v(ffmpeg::software::scaling::version())),
    ]
}

/// ffmpeg's one-time setup (video-rs routes its log to `tracing`: silent unless a subscriber listens).
fn init() -> Result<()> {
    static INIT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| video_rs::init().map_err(|e| e.to_string())).clone().map_err(Failure::Init)
}

/// For each decoded frame (in decode order), its index in presentation order, or `None` when a later
/// frame has the same timestamp and replaces it (the official `frames[frame.pts] = frame`).
fn presentation_order(keys: &[Option<i64>]) -> Vec<Option<usize>> {
    // Frames without any timestamp: keep decode order for all (see the module header).
    let keys: Vec<i64> = if keys.iter().all(Option::is_some) {
        keys.iter().flatten().copied().collect()
    } else {
        (0..keys.len() as i64).collect()
    };
    let mut last_with_key = std::collections::BTreeMap::new();
    for (ordinal, key) in keys.iter().enumerate() {
        last_with_key.insert(*key, ordinal);
    }
    let mut order = vec![None; keys.len()];
    for (index, ordinal) in last_with_key.values().enumerate() {
        order[*ordinal] = Some(index);
    }
    order
}

/// One decoding pass over the file: the timestamps of all frames, RGB for the wanted ones.
struct Pass {
    /// Per decoded frame, in decode order: `pts`, else the best-effort timestamp.
    keys: Vec<Option<i64>>,
    /// `(decode ordinal, frame)` for the frames `wanted` asked for.
    rgb: Vec<(usize, Frame)>,
    width: usize,
    height: usize,
    fps: f64,
    codec: String,
    pix_fmt: String,
    stream_index: usize,
}

impl Pass {
    fn run(path: &Path, file_len: u64, wanted: impl Fn(usize) -> bool) -> Result<Pass> {
        let text = path.to_str().filter(|p| !p.contains('\0')).ok_or(Failure::Path)?;
        let mut input = ffmpeg::format::input(text).map_err(Failure::Open)?;
        if input.format().name().contains("matroska") {
            check_matroska_length(path, file_len)?;
        }
        let is_video = |s: &ffmpeg::format::stream::Stream| {
            s.parameters().medium() == ffmpeg::media::Type::Video
                && !s.disposition().contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC)
        };
        let Some(stream) = input.streams().find(is_video) else {
            let kinds: Vec<String> =
                input.streams().map(|s| format!("{:?}", s.parameters().medium()).to_lowercase()).collect();
            return Err(Failure::NoVideoStream(if kinds.is_empty() { "no streams".into() } else { kinds.join(", ") }));
        };
        let stream_index = stream.index();
        let rate =
            |r: ffmpeg::Rational| (r.denominator() != 0).then(|| f64::from(r.numerator()) / f64::from(r.denominator()));
        let fps = rate(stream.avg_frame_rate()).filter(|f| *f > 0.0).or(rate(stream.rate())).unwrap_or(0.0);
        let codec = stream.parameters().id().name().to_string();
        // One decoder thread, as the official loader sets (`thread_count = 1`; it is also libavcodec's default).
        let mut decoder = ffmpeg::codec::Context::from_parameters(stream.parameters())
            .and_then(|c| c.decoder().video())
            .map_err(|source| Failure::Codec { stream: stream_index, codec: codec.clone(), source })?;

        let mut pass = Pass {
            keys: Vec::new(),
            rgb: Vec::new(),
            width: 0,
            height: 0,
            fps,
            codec,
            pix_fmt: String::new(),
            stream_index,
        };
        let mut to_rgb = Rgb::default();
        let mut packet_no = 0;
        loop {
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(source) => return Err(Failure::Demux { packet: packet_no, source }),
            }
            if packet.stream() != stream_index {
                continue;
            }
            if packet.is_corrupt() {
                return Err(Failure::CorruptPacket { packet: packet_no });
            }
            decoder.send_packet(&packet).map_err(|source| Failure::Decode { packet: packet_no, source })?;
            pass.receive(&mut decoder, &mut to_rgb, &wanted, packet_no)?;
            packet_no += 1;
        }
        decoder.send_eof().map_err(|source| Failure::Decode { packet: packet_no, source })?;
        pass.receive(&mut decoder, &mut to_rgb, &wanted, packet_no)?;
        if pass.keys.is_empty() {
            return Err(Failure::NoFrames);
        }
        Ok(pass)
    }

    /// Takes every frame the decoder has ready.
    fn receive(
        &mut self,
        decoder: &mut ffmpeg::decoder::Video,
        to_rgb: &mut Rgb,
        wanted: &impl Fn(usize) -> bool,
        packet_no: usize,
    ) -> Result<()> {
        let mut decoded = ffmpeg::frame::Video::empty();
        loop {
            match decoder.receive_frame(&mut decoded) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => return Ok(()),
                Err(source) => return Err(Failure::Decode { packet: packet_no, source }),
            }
            let ordinal = self.keys.len();
            let (width, height) = (decoded.width() as usize, decoded.height() as usize);
            if ordinal == 0 {
                (self.width, self.height) = (width, height);
                self.pix_fmt = decoded
                    .format()
                    .descriptor()
                    .map_or_else(|| format!("{:?}", decoded.format()), |d| d.name().to_string());
            } else if (width, height) != (self.width, self.height) {
                let (first_width, first_height) = (self.width, self.height);
                return Err(Failure::SizeChanged { frame: ordinal, width, height, first_width, first_height });
            }
            self.keys.push(decoded.pts().or(decoded.timestamp()));
            if wanted(ordinal) {
                let frame = to_rgb.convert(&decoded).map_err(|source| Failure::Convert {
                    frame: ordinal,
                    pix_fmt: self.pix_fmt.clone(),
                    source,
                })?;
                self.rgb.push((ordinal, frame));
            }
        }
    }
}

/// PyAV 10's `VideoFrame.to_rgb()`: `sws_getCachedContext(w, h, fmt, w, h, rgb24, SWS_BILINEAR)` and
/// `sws_scale`, no colour details set. The context is made again when the input format or size changes.
#[derive(Default)]
struct Rgb {
    scaler: Option<ffmpeg::software::scaling::Context>,
}

impl Rgb {
    fn convert(&mut self, frame: &ffmpeg::frame::Video) -> std::result::Result<Frame, ffmpeg::Error> {
        use ffmpeg::format::Pixel;
        let (format, width, height) = (frame.format(), frame.width(), frame.height());
        let fits = |s: &ffmpeg::software::scaling::Context| {
            let i = s.input();
            (i.format, i.width, i.height) == (format, width, height)
        };
        if !self.scaler.as_ref().is_some_and(fits) {
            let flags = ffmpeg::software::scaling::Flags::BILINEAR;
            self.scaler = Some(ffmpeg::software::scaling::Context::get(
                format,
                width,
                height,
                Pixel::RGB24,
                width,
                height,
                flags,
            )?);
        }
        let scaler = self.scaler.as_mut().expect("made above");
        let mut rgb = ffmpeg::frame::Video::empty();
        scaler.run(frame, &mut rgb)?;
        // rows of the rgb24 plane are padded to the stride; ours are packed
        let (w, h, stride) = (width as usize, height as usize, rgb.stride(0));
        let data = rgb.data(0);
        let mut packed = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            packed.extend_from_slice(&data[y * stride..y * stride + w * 3]);
        }
        Ok(Frame::new(w, h, packed))
    }
}

/// Matroska/WebM: the Segment element after the EBML header declares its size; a file that ends before
/// the segment does was cut short. libavformat notices ("File ended prematurely") but reports end of
/// file, so decoding would silently stop early. A segment of unknown size (live streams) is not checked.
fn check_matroska_length(path: &Path, file_len: u64) -> Result<()> {
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(path)?.take(4096).read_to_end(&mut head)?;
    let mut pos = 0;
    while let Some((id, id_len)) = vint(&head[pos..], true) {
        let Some((size, size_len)) = vint(&head[pos + id_len..], false) else { return Ok(()) };
        let data_start = (pos + id_len + size_len) as u64;
        let unknown = size == (1u64 << (7 * size_len)) - 1;
        if id == 0x1853_8067 {
            // Segment
            let declared_end = data_start + size;
            return match unknown || declared_end <= file_len {
                true => Ok(()),
                false => Err(Failure::Truncated { declared_end, file_len }),
            };
        }
        if unknown || data_start + size > head.len() as u64 {
            return Ok(());
        }
        pos = (data_start + size) as usize;
    }
    Ok(())
}

/// An EBML variable-length integer at the start of `bytes`: (value, length). IDs keep their marker bit.
fn vint(bytes: &[u8], keep_marker: bool) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 || bytes.len() < len {
        return None;
    }
    let first_bits = if keep_marker { u64::from(first) } else { u64::from(first) & (0xff >> len) };
    Some((bytes[1..len].iter().fold(first_bits, |v, b| (v << 8) | u64::from(*b)), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official `frames[frame.pts] = frame; sorted(frames)`: presentation order by pts, and the
    /// *last* decoded frame wins a repeated pts.
    #[test]
    fn presentation_order_sorts_by_pts_and_a_repeated_pts_keeps_the_last_frame() {
        let keys = [Some(0), Some(1024), Some(512), Some(512), Some(1536)];
        assert_eq!(presentation_order(&keys), vec![Some(0), Some(2), None, Some(1), Some(3)]);
    }

    /// Without timestamps the decode order stands (the official dict would merge them into one frame).
    #[test]
    fn frames_without_timestamps_keep_decode_order() {
        assert_eq!(presentation_order(&[Some(5), None, Some(1)]), vec![Some(0), Some(1), Some(2)]);
    }

    /// EBML: `1A 45 DF A3` is a 4-byte ID with its marker; `0x81` is size 1, `0x40 0x02` size 2,
    /// `0x01 FF FF FF FF FF FF FF` the 8-byte "unknown" size.
    #[test]
    fn ebml_variable_length_integers_read_as_the_matroska_spec_says() {
        assert_eq!(vint(&[0x1A, 0x45, 0xDF, 0xA3], true), Some((0x1A45_DFA3, 4)));
        assert_eq!(vint(&[0x81], false), Some((1, 1)));
        assert_eq!(vint(&[0x40, 0x02], false), Some((2, 2)));
        assert_eq!(vint(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], false), Some(((1 << 56) - 1, 8)));
        assert_eq!(vint(&[0x00], false), None);
    }
}
