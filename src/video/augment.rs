//! RandAugment as ST-Adapter's SSv2 recipe runs it: `--auto_augment rand-m7-n4-mstd0.5-inc1`
//! (`video_dataset/rand_augment.py`, SlowFast's copy of timm's RandAugment, on PIL images).
//!
//! Per clip: 4 ops drawn uniformly **with replacement** from the 15 "increasing" ops; each op runs with
//! probability 0.5 (`random.random() > 0.5` skips it), with magnitude `clip(N(7, 0.5), 0, 10)` and, for
//! signed ops, a random sign; the same op and arguments are applied to every frame of the clip. The
//! frames are the decoded RGB u8 frames at full resolution (the official `ToPILImage` of `x/255` gives the
//! same bytes back: checked for all 256 values). Interpolation BICUBIC, fill (128, 128, 128).
//!
//! | op | level → argument (m ∈ [0, 10]) | PIL 9.4 kernel ported |
//! |---|---|---|
//! | AutoContrast, Equalize, Invert | — | `ImageOps` LUTs on the per-channel histograms |
//! | Rotate | ±30·m/10 degrees | `Image.rotate`: matrix rounded to 15 decimals, then the affine transform below |
//! | PosterizeIncreasing | keep `4 − int(4m/10)` bits | LUT |
//! | SolarizeIncreasing | threshold `256 − int(256m/10)` | LUT |
//! | SolarizeAdd | add `int(110m/10)` below 128 | LUT |
//! | Color/Contrast/Brightness/SharpnessIncreasing | factor `1 ± 0.9m/10` | `ImageEnhance`: L = (19595R + 38470G + 7471B + 2^15) >> 16, mean `int(mean + 0.5)`, SMOOTH 3×3 (borders kept), `ImagingBlend` in f32 with truncation |
//! | ShearX/ShearY | ±0.3m/10 | `Geometry.c` affine `(1, f, 0, 0, 1, 0)` / `(1, 0, 0, f, 1, 0)` with PIL's own cubic (`p1 + d(p2 + d(p3 + d·p4))`, i.e. a = −1, in f64, truncated), fill outside |
//! | TranslateXRel/YRel | ±0.45m/10 of the width/height | affine translation |
//!
//! Every op with fixed arguments is byte-identical to Pillow 9.4.0 (`fixtures/video/randaugment.json`,
//! tests/video_pipelines.rs). Draws: our RNG through [`RaDraws`] (op choice, gates, signs, Gaussian
//! magnitudes), not Python's `random`/NumPy streams.

use super::Frame;
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// The random choices RandAugment makes, in the order the official code makes them.
pub trait RaDraws {
    /// `np.random.choice(ops, ...)`: one index in `0..n`.
    fn choice(&mut self, n: usize) -> usize;
    /// `random.random()`.
    fn random(&mut self) -> f64;
    /// `random.gauss(mu, sigma)`.
    fn gauss(&mut self, mu: f64, sigma: f64) -> f64;
}

impl<R: Rng> RaDraws for R {
    fn choice(&mut self, n: usize) -> usize {
        self.gen_range(0..n)
    }
    fn random(&mut self) -> f64 {
        self.gen::<f64>()
    }
    fn gauss(&mut self, mu: f64, sigma: f64) -> f64 {
        Normal::new(mu, sigma).map(|d| d.sample(self)).unwrap_or(mu)
    }
}

/// `_RAND_INCREASING_TRANSFORMS`, in the official order (the order matters for `choice`).
pub const INCREASING_OPS: [&str; 15] = [
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
];

const FILL: [u8; 3] = [128, 128, 128];
const MAX_LEVEL: f64 = 10.0;

/// `rand_augment_transform(config_str, hparams)` for the increasing op set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandAugment {
    pub magnitude: f64,
    pub num_layers: usize,
    pub magnitude_std: f64,
    pub prob: f64,
}

impl RandAugment {
    /// `rand-m7-n4-mstd0.5-inc1` (`train_ssv2_clip_vit_b16_adapter24x384.sh`).
    pub fn st_ssv2() -> Self {
        Self { magnitude: 7.0, num_layers: 4, magnitude_std: 0.5, prob: 0.5 }
    }

    /// Augment a clip: the same ops and arguments on every frame.
    pub fn apply(&self, frames: &[Frame], d: &mut dyn RaDraws) -> Vec<Frame> {
        let ops: Vec<usize> = (0..self.num_layers).map(|_| d.choice(INCREASING_OPS.len())).collect();
        let mut out = frames.to_vec();
        for op in ops {
            if self.prob < 1.0 && d.random() > self.prob {
                continue;
            }
            let mut m = self.magnitude;
            if self.magnitude_std > 0.0 {
                m = d.gauss(m, self.magnitude_std);
            }
            let m = m.clamp(0.0, MAX_LEVEL);
            let arg = level_arg(INCREASING_OPS[op], m, d);
            out = out.iter().map(|f| apply_op(INCREASING_OPS[op], arg, f)).collect();
        }
        out
    }
}

/// The op's argument from its magnitude (`LEVEL_TO_ARG`); signed ops draw their sign
/// (`-v if random.random() > 0.5 else v`). Ops without an argument get 0.
pub fn level_arg(name: &str, m: f64, d: &mut dyn RaDraws) -> f64 {
    let mut neg = |v: f64| if d.random() > 0.5 { -v } else { v };
    match name {
        "Rotate" => neg(m / MAX_LEVEL * 30.0),
        "PosterizeIncreasing" => (4 - (m / MAX_LEVEL * 4.0) as i64) as f64,
        "SolarizeIncreasing" => (256 - (m / MAX_LEVEL * 256.0) as i64) as f64,
        "SolarizeAdd" => ((m / MAX_LEVEL) * 110.0) as i64 as f64,
        "ColorIncreasing" | "ContrastIncreasing" | "BrightnessIncreasing" | "SharpnessIncreasing" => {
            1.0 + neg(m / MAX_LEVEL * 0.9)
        }
        "ShearX" | "ShearY" => neg(m / MAX_LEVEL * 0.3),
        "TranslateXRel" | "TranslateYRel" => neg(m / MAX_LEVEL * 0.45),
        _ => 0.0,
    }
}

/// One op with its argument on one RGB frame, as PIL 9.4 computes it.
pub fn apply_op(name: &str, arg: f64, f: &Frame) -> Frame {
    match name {
        "AutoContrast" => lut3(f, autocontrast_luts(f)),
        "Equalize" => lut3(f, equalize_luts(f)),
        "Invert" => lut1(f, |i| 255 - i),
        "Rotate" => rotate(f, arg),
        "PosterizeIncreasing" => {
            let bits = arg as i64;
            if bits >= 8 {
                f.clone()
            } else {
                let mask = !((1i64 << (8 - bits)) - 1) as u8;
                lut1(f, |i| i & mask)
            }
        }
        "SolarizeIncreasing" => lut1(f, |i| if (i as f64) < arg { i } else { 255 - i }),
        "SolarizeAdd" => lut1(f, |i| if i < 128 { (i as i64 + arg as i64).min(255) as u8 } else { i }),
        "ColorIncreasing" => {
            let gray: Vec<u8> = f.rgb.chunks(3).flat_map(|p| [luma(p); 3]).collect();
            blend(&gray, f, arg as f32)
        }
        "ContrastIncreasing" => {
            let mut hist = [0u64; 256];
            f.rgb.chunks(3).for_each(|p| hist[luma(p) as usize] += 1);
            let sum: f64 = hist.iter().enumerate().map(|(i, &c)| (i as u64 * c) as f64).sum();
            let mean = (sum / (f.width * f.height) as f64 + 0.5) as u8;
            blend(&vec![mean; f.rgb.len()], f, arg as f32)
        }
        "BrightnessIncreasing" => blend(&vec![0; f.rgb.len()], f, arg as f32),
        "SharpnessIncreasing" => blend(&smooth(f).rgb, f, arg as f32),
        "ShearX" => affine(f, [1.0, arg, 0.0, 0.0, 1.0, 0.0]),
        "ShearY" => affine(f, [1.0, 0.0, 0.0, arg, 1.0, 0.0]),
        "TranslateXRel" => affine(f, [1.0, 0.0, arg * f.width as f64, 0.0, 1.0, 0.0]),
        "TranslateYRel" => affine(f, [1.0, 0.0, 0.0, 0.0, 1.0, arg * f.height as f64]),
        other => panic!("unknown RandAugment op {other}"),
    }
}

/// PIL's RGB→L: ITU-R 601-2 in 16-bit fixed point.
fn luma(p: &[u8]) -> u8 {
    ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8
}

fn lut1(f: &Frame, g: impl Fn(u8) -> u8) -> Frame {
    let lut: Vec<u8> = (0..=255u8).map(g).collect();
    lut3(f, [lut.clone(), lut.clone(), lut])
}

fn lut3(f: &Frame, luts: [Vec<u8>; 3]) -> Frame {
    let rgb = f.rgb.iter().enumerate().map(|(i, &v)| luts[i % 3][v as usize]).collect();
    Frame::new(f.width, f.height, rgb)
}

fn histograms(f: &Frame) -> [[u64; 256]; 3] {
    let mut h = [[0u64; 256]; 3];
    f.rgb.iter().enumerate().for_each(|(i, &v)| h[i % 3][v as usize] += 1);
    h
}

/// `ImageOps.autocontrast(cutoff=0)`.
fn autocontrast_luts(f: &Frame) -> [Vec<u8>; 3] {
    histograms(f).map(|h| {
        let lo = (0..256).find(|&i| h[i] != 0).unwrap_or(255);
        let hi = (0..256).rev().find(|&i| h[i] != 0).unwrap_or(0);
        if hi <= lo {
            return (0..=255u8).collect();
        }
        let scale = 255.0 / (hi - lo) as f64;
        let offset = -(lo as f64) * scale;
        (0..256).map(|ix| ((ix as f64 * scale + offset) as i64).clamp(0, 255) as u8).collect()
    })
}

/// `ImageOps.equalize`.
fn equalize_luts(f: &Frame) -> [Vec<u8>; 3] {
    histograms(f).map(|h| {
        let nonzero: Vec<u64> = h.iter().copied().filter(|&c| c != 0).collect();
        if nonzero.len() <= 1 {
            return (0..=255u8).collect();
        }
        let step = (nonzero.iter().sum::<u64>() - nonzero[nonzero.len() - 1]) / 255;
        if step == 0 {
            return (0..=255u8).collect();
        }
        let mut n = step / 2;
        (0..256)
            .map(|i| {
                let v = (n / step).min(255) as u8;
                n += h[i];
                v
            })
            .collect()
    })
}

/// `Image.blend(degenerate, image, alpha)` (`ImagingBlend`, alpha as C float).
fn blend(degenerate: &[u8], f: &Frame, alpha: f32) -> Frame {
    if alpha == 0.0 {
        return Frame::new(f.width, f.height, degenerate.to_vec());
    }
    if alpha == 1.0 {
        return f.clone();
    }
    let rgb = degenerate
        .iter()
        .zip(&f.rgb)
        .map(|(&a, &b)| {
            let t = a as i32 as f32 + alpha * (b as i32 - a as i32) as f32;
            if (0.0..=1.0).contains(&alpha) {
                t as u8
            } else if t <= 0.0 {
                0
            } else if t >= 255.0 {
                255
            } else {
                t as u8
            }
        })
        .collect();
    Frame::new(f.width, f.height, rgb)
}

/// `ImageFilter.SMOOTH` (3×3, weights 1 and 5 at the centre, /13; `ImagingFilter3x3`: first/last rows
/// and columns copied; f32 sums with +0.5 and truncation).
fn smooth(f: &Frame) -> Frame {
    let (w, h) = (f.width, f.height);
    if w < 3 || h < 3 {
        return f.clone();
    }
    let k1 = 1f32 / 13f32;
    let k5 = 5f32 / 13f32;
    let at = |y: usize, x: usize, c: usize| f.rgb[(y * w + x) * 3 + c] as f32;
    let row3 = |y: usize, x: usize, c: usize, mid: f32| at(y, x - 1, c) * k1 + at(y, x, c) * mid + at(y, x + 1, c) * k1;
    let mut out = f.rgb.clone();
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            for c in 0..3 {
                let mut ss = 0.5f32;
                ss += row3(y + 1, x, c, k1);
                ss += row3(y, x, c, k5);
                ss += row3(y - 1, x, c, k1);
                out[(y * w + x) * 3 + c] = if ss <= 0.0 {
                    0
                } else if ss >= 255.0 {
                    255
                } else {
                    ss as u8
                };
            }
        }
    }
    Frame::new(w, h, out)
}

/// PIL's cubic (`Geometry.c` `BICUBIC` macro).
fn pil_cubic(v1: f64, v2: f64, v3: f64, v4: f64, d: f64) -> f64 {
    let p1 = v2;
    let p2 = -v1 + v3;
    let p3 = 2.0 * (v1 - v2) + v3 - v4;
    let p4 = -v1 + v2 - v3 + v4;
    p1 + d * (p2 + d * (p3 + d * p4))
}

/// `Image.transform(size, AFFINE, a, BICUBIC, fillcolor=(128,128,128))`: for each output pixel centre
/// `(x+0.5, y+0.5)` the source point `(a0·x + a1·y + a2, a3·x + a4·y + a5)`; outside the image: fill.
pub fn affine(f: &Frame, a: [f64; 6]) -> Frame {
    let (w, h) = (f.width, f.height);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let (xo, yo) = (x as f64 + 0.5, y as f64 + 0.5);
            let mut xin = a[0] * xo + a[1] * yo + a[2];
            let mut yin = a[3] * xo + a[4] * yo + a[5];
            if xin < 0.0 || xin >= w as f64 || yin < 0.0 || yin >= h as f64 {
                rgb.extend_from_slice(&FILL);
                continue;
            }
            xin -= 0.5;
            yin -= 0.5;
            let (xf, yf) = (xin.floor(), yin.floor());
            let (dx, dy) = (xin - xf, yin - yf);
            let (x0, y0) = (xf as i64 - 1, yf as i64 - 1);
            let xs = [0, 1, 2, 3].map(|j| (x0 + j).clamp(0, w as i64 - 1) as usize);
            let ys = [0, 1, 2, 3].map(|j| (y0 + j).clamp(0, h as i64 - 1) as usize);
            for c in 0..3 {
                let px = |yy: usize, xx: usize| f.rgb[(yy * w + xx) * 3 + c] as f64;
                let r = ys.map(|yy| pil_cubic(px(yy, xs[0]), px(yy, xs[1]), px(yy, xs[2]), px(yy, xs[3]), dx));
                let v = pil_cubic(r[0], r[1], r[2], r[3], dy);
                rgb.push(if v <= 0.0 {
                    0
                } else if v >= 255.0 {
                    255
                } else {
                    v as u8
                });
            }
        }
    }
    Frame::new(w, h, rgb)
}

/// Python's `round(x, 15)` (correctly rounded to 15 decimals).
fn round15(x: f64) -> f64 {
    format!("{x:.15}").parse().unwrap_or(x)
}

/// Python's float `%`: the result has the sign of the divisor.
fn py_mod(a: f64, b: f64) -> f64 {
    let r = a % b;
    if r != 0.0 && (r < 0.0) != (b < 0.0) {
        r + b
    } else {
        r
    }
}

/// `Image.rotate(degrees, BICUBIC, fillcolor=(128,128,128))`, no expand, about the image centre.
/// (Angles here are within ±30°, so PIL's 90°/180°/270° transpose shortcuts never apply.)
pub fn rotate(f: &Frame, degrees: f64) -> Frame {
    let angle = py_mod(degrees, 360.0);
    if angle == 0.0 {
        return f.clone();
    }
    let (cx, cy) = (f.width as f64 / 2.0, f.height as f64 / 2.0);
    let r = -(angle * (std::f64::consts::PI / 180.0));
    let mut m = [round15(r.cos()), round15(r.sin()), 0.0, round15(-r.sin()), round15(r.cos()), 0.0];
    // transform(-cx, -cy, matrix): a·x + b·y + c with c = 0.0 (adding 0.0 changes nothing)
    m[2] = m[0] * -cx + m[1] * -cy;
    m[5] = m[3] * -cx + m[4] * -cy;
    m[2] += cx;
    m[5] += cy;
    affine(f, m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Python: -21.5 % 360 = 338.5; round(0.1234567890123456789, 15) = 0.123456789012346.
    #[test]
    fn python_float_helpers_match_python() {
        assert_eq!(py_mod(-21.5, 360.0), 338.5);
        assert_eq!(round15(0.123_456_789_012_345_68), 0.123456789012346);
    }

    /// Same seed, same augmented clip.
    #[test]
    fn rand_augment_is_deterministic_under_a_seed() {
        let f: Vec<Frame> =
            (0..2).map(|t| Frame::new(9, 7, (0..189).map(|i| ((i * 31 + t * 7) % 256) as u8).collect())).collect();
        let run = |s| RandAugment::st_ssv2().apply(&f, &mut rand::rngs::StdRng::seed_from_u64(s));
        assert_eq!(run(1), run(1));
    }
}
