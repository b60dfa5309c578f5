//! Spatial transforms, ported kernel for kernel from the official pipelines.
//!
//! Legend: `H, W` frame height and width · `S` crop size · `C = 3` channels (RGB, the decoder's order;
//! neither repo converts to BGR) · planes are row-major `(H, W)` f32.
//!
//! | kernel | official op | port |
//! |---|---|---|
//! | [`bicubic_plane`] | `torch.nn.functional.interpolate(mode='bicubic', align_corners=False)` on f32 (ST-Adapter: normalised frames; no antialias) | Keys cubic, a = −0.75, 4 taps clamped at the border; weights and sums with torch's own rounding (see below) |
//! | [`cv2_linear`] | `mmcv.imresize(..., 'bilinear')` = `cv2.resize(INTER_LINEAR)` on u8 (AIM) | 11-bit fixed-point weights, `(b0·(h0>>4)>>16) + (b1·(h1>>4)>>16) + 2 >> 2`; x clamped at the border, y not; an exact 2× shrink becomes INTER_AREA `(a+b+c+d+2)>>2` as in OpenCV |
//! | [`st_normalize`] | `(frames.float()/255. − mean)/std` in f32 (ST-Adapter, before resizing) | same f32 operations |
//! | [`mma_normalize`] | `mmcv.imnormalize_` (cv2.subtract, cv2.multiply by 1/std in f64) on 0..255 floats (AIM, after cropping) | `f32((x − mean) as f64 · (1/std))`, checked on all 256 inputs |
//!
//! **torch's bicubic rounding.** The weights come from `compute_indices_weights_cubic` in f32, and the
//! x86-64 AVX2/AVX512 builds of `UpSampleKernel.cpp` contract some products into fused multiply-adds. The
//! port reproduces that build bit for bit (measured on torch 2.15, `ATEN_CPU_CAPABILITY=avx2` and
//! `avx512`): source index `fma(scale, i + 0.5, −0.5)`; `cc2(x) = fma(fma(A, x, −5A), x, 8A)·x − 4A`;
//! `cc1(x) = ((A+2)x − (A+3))·x·x + 1` unfused; each 4-tap sum `fma(t3,w3, fma(t2,w2, fma(t0,w0, t1·w1)))`.
//! torch's `default` (no-FMA) capability rounds differently (≤ 1e-6 on unit-scale inputs).
//! **cv2's linear kernel** was checked against opencv-python 4.6 (x86-64): SIMD and scalar paths of
//! `VResizeLinear<uchar>` share the formula above, so the result does not depend on the SIMD width.

use super::Frame;

/// CLIP's mean and std (ST-Adapter `dataset.py` defaults, digits as written there), for frames scaled to 0..1.
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// AIM's `img_norm_cfg` (the same statistics ×255, rounded by the config): 0..255 frames.
pub const MMA_MEAN: [f32; 3] = [122.769, 116.74, 104.04];
pub const MMA_STD: [f32; 3] = [68.493, 66.63, 70.321];

/// A float image, channels first: `C` planes of `(h, w)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Planes {
    pub h: usize,
    pub w: usize,
    /// `c · h · w` values: channel c, row y, column x at `(c·h + y)·w + x`.
    pub data: Vec<f32>,
}

impl Planes {
    pub fn channels(&self) -> usize {
        self.data.len() / (self.h * self.w)
    }

    /// Rows `y0..y0+hh`, columns `x0..x0+ww` of every channel.
    pub fn crop(&self, y0: usize, x0: usize, hh: usize, ww: usize) -> Planes {
        assert!(y0 + hh <= self.h && x0 + ww <= self.w, "crop outside the image");
        let mut data = Vec::with_capacity(self.channels() * hh * ww);
        for c in 0..self.channels() {
            for y in y0..y0 + hh {
                let row = (c * self.h + y) * self.w;
                data.extend_from_slice(&self.data[row + x0..row + x0 + ww]);
            }
        }
        Planes { h: hh, w: ww, data }
    }

    /// Mirror left-right (`frames.flip(-1)` / `mmcv.imflip_` horizontal).
    pub fn flip(&mut self) {
        for row in self.data.chunks_mut(self.w) {
            row.reverse();
        }
    }

    /// Every channel resized with torch's bicubic kernel.
    pub fn bicubic(&self, oh: usize, ow: usize) -> Planes {
        let hw = self.h * self.w;
        let mut data = Vec::with_capacity(self.channels() * oh * ow);
        for c in 0..self.channels() {
            data.extend(bicubic_plane(&self.data[c * hw..(c + 1) * hw], self.h, self.w, oh, ow));
        }
        Planes { h: oh, w: ow, data }
    }
}

// ANCHOR: st_normalize
/// ST-Adapter: `((x as f32) / 255 − mean) / std`, per channel, to channels-first planes.
pub fn st_normalize(f: &Frame) -> Planes {
    let hw = f.width * f.height;
    let mut data = vec![0f32; 3 * hw];
    for (p, px) in f.rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            data[c * hw + p] = (px[c] as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
    Planes { h: f.height, w: f.width, data }
}
// ANCHOR_END: st_normalize

// ANCHOR: mma_normalize
/// AIM (mmcv `imnormalize_`, `to_rgb=False`): `(x − mean)` in f32, times `1/std` computed in f64.
pub fn mma_normalize(f: &Frame) -> Planes {
    let hw = f.width * f.height;
    let inv: [f64; 3] = MMA_STD.map(|s| 1.0 / s as f64);
    let mut data = vec![0f32; 3 * hw];
    for (p, px) in f.rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            data[c * hw + p] = (((px[c] as f32 - MMA_MEAN[c]) as f64) * inv[c]) as f32;
        }
    }
    Planes { h: f.height, w: f.width, data }
}
// ANCHOR_END: mma_normalize

// ANCHOR: bicubic
const A: f32 = -0.75;

fn cc1(x: f32) -> f32 {
    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
}

fn cc2(x: f32) -> f32 {
    A.mul_add(x, -5.0 * A).mul_add(x, 8.0 * A) * x - 4.0 * A
}

/// For each output position: the 4 clamped source indices and their weights (torch's
/// `HelperInterpCubic::compute_indices_weights`, `guard_index_and_lambda`).
pub fn bicubic_taps(input: usize, output: usize) -> Vec<([usize; 4], [f32; 4])> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            let real = scale.mul_add(i as f32 + 0.5, -0.5);
            let idx = (real.floor() as i64).min(input as i64 - 1);
            let t = (real - idx as f32).clamp(0.0, 1.0);
            let w = [cc2(t + 1.0), cc1(t), cc1(1.0 - t), cc2((1.0 - t) + 1.0)];
            let ix = [0, 1, 2, 3].map(|j| (idx + j - 1).clamp(0, input as i64 - 1) as usize);
            (ix, w)
        })
        .collect()
}

fn tap4(v: [f32; 4], w: [f32; 4]) -> f32 {
    v[3].mul_add(w[3], v[2].mul_add(w[2], v[0].mul_add(w[0], v[1] * w[1])))
}

/// One `(h, w)` plane resized to `(oh, ow)` like torch's CPU bicubic (align_corners=False, no antialias).
pub fn bicubic_plane(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    assert_eq!(src.len(), h * w);
    let ty = bicubic_taps(h, oh);
    let tx = bicubic_taps(w, ow);
    let mut out = Vec::with_capacity(oh * ow);
    for (yi, yw) in &ty {
        for (xi, xw) in &tx {
            let rows = yi.map(|y| tap4(xi.map(|x| src[y * w + x]), *xw));
            out.push(tap4(rows, *yw));
        }
    }
    out
}
// ANCHOR_END: bicubic

// ANCHOR: cv2_linear
const COEF_SCALE: f32 = 2048.0; // INTER_RESIZE_COEF_SCALE = 1 << 11

/// Source offsets and 11-bit weights of cv2's INTER_LINEAR along one axis (`clamp`: the x axis clamps
/// positions outside the image to the border pixel with weight 1; the y axis keeps the raw weights).
fn cv2_taps(src: usize, dst: usize, clamp: bool) -> Vec<(i64, [i32; 2])> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let mut f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            f -= s as f32;
            if clamp && s < 0 {
                f = 0.0;
                s = 0;
            }
            if clamp && s >= src as i64 - 1 {
                f = 0.0;
                s = src as i64 - 1;
            }
            // saturate_cast<short>(float): round half to even
            let w0 = ((1.0 - f) * COEF_SCALE).round_ties_even() as i32;
            let w1 = (f * COEF_SCALE).round_ties_even() as i32;
            (s, [w0, w1])
        })
        .collect()
}

/// `cv2.resize(frame, (ow, oh), interpolation=cv2.INTER_LINEAR)` on an RGB u8 frame.
pub fn cv2_linear(f: &Frame, ow: usize, oh: usize) -> Frame {
    let (w, h) = (f.width, f.height);
    if w == ow && h == oh {
        return f.clone();
    }
    if w == 2 * ow && h == 2 * oh {
        // OpenCV turns an exact 2x shrink into INTER_AREA (`resizeAreaFast_`)
        let mut rgb = Vec::with_capacity(ow * oh * 3);
        for y in 0..oh {
            for x in 0..ow {
                for c in 0..3 {
                    let p = |yy: usize, xx: usize| f.rgb[(yy * w + xx) * 3 + c] as u32;
                    let s = p(2 * y, 2 * x) + p(2 * y, 2 * x + 1) + p(2 * y + 1, 2 * x) + p(2 * y + 1, 2 * x + 1);
                    rgb.push(((s + 2) >> 2) as u8);
                }
            }
        }
        return Frame::new(ow, oh, rgb);
    }
    let tx = cv2_taps(w, ow, true);
    let ty = cv2_taps(h, oh, false);
    // horizontal pass: int sums S[y][x·3+c] = a0·src[sx] + a1·src[sx+1]
    let hrow = |y: usize| -> Vec<i32> {
        let mut r = Vec::with_capacity(ow * 3);
        for (sx, a) in &tx {
            let sx = *sx as usize;
            let sx1 = (sx + 1).min(w - 1);
            for c in 0..3 {
                let v0 = f.rgb[(y * w + sx) * 3 + c] as i32;
                let v1 = f.rgb[(y * w + sx1) * 3 + c] as i32;
                r.push(v0 * a[0] + v1 * a[1]);
            }
        }
        r
    };
    let rows: Vec<Vec<i32>> = (0..h).map(hrow).collect();
    let mut rgb = Vec::with_capacity(ow * oh * 3);
    for (sy, b) in &ty {
        let r0 = &rows[(*sy).clamp(0, h as i64 - 1) as usize];
        let r1 = &rows[(*sy + 1).clamp(0, h as i64 - 1) as usize];
        for x in 0..ow * 3 {
            let v = (((b[0] * (r0[x] >> 4)) >> 16) + ((b[1] * (r1[x] >> 4)) >> 16) + 2) >> 2;
            rgb.push(v.clamp(0, 255) as u8);
        }
    }
    Frame::new(ow, oh, rgb)
}
// ANCHOR_END: cv2_linear

/// mmcv `rescale_size((w, h), (inf, short))`: the size whose short side is `short`, each side
/// `int(side · short/min(w, h) + 0.5)` (f64, as Python computes it).
pub fn mma_rescale_size(w: usize, h: usize, short: usize) -> (usize, usize) {
    let factor = short as f64 / w.min(h) as f64;
    ((w as f64 * factor + 0.5) as usize, (h as f64 * factor + 0.5) as usize)
}

/// ST-Adapter's test resize: short side `s`, long side `long · s // short` (integer division).
pub fn st_short_side_size(w: usize, h: usize, s: usize) -> (usize, usize) {
    if h < w {
        (w * s / h, s)
    } else {
        (s, h * s / w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys' cubic weights sum to 1 (exactly for t = 0: [0, 1, 0, 0]).
    #[test]
    fn bicubic_identity_size_copies_the_plane() {
        let src: Vec<f32> = (0..35).map(|i| (i as f32 * 0.37).sin()).collect();
        assert_eq!(bicubic_plane(&src, 5, 7, 5, 7), src);
    }

    /// cv2 keeps a frame of the target size unchanged and averages 2x2 blocks on an exact 2x shrink,
    /// rounding half up: (0 + 1 + 2 + 3 + 2) >> 2 = 2.
    #[test]
    fn cv2_linear_halving_is_a_rounded_2x2_mean() {
        let f = Frame::new(2, 2, vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
        assert_eq!(cv2_linear(&f, 1, 1).rgb, vec![2, 2, 2]);
        assert_eq!(cv2_linear(&f, 2, 2), f);
    }

    /// mmcv rounds each side half up: 320x240 to short side 224 gives 299x224 (320·224/240 = 298.67).
    #[test]
    fn mma_rescale_320x240_to_224_is_299x224() {
        assert_eq!(mma_rescale_size(320, 240, 224), (299, 224));
        // ST-Adapter divides instead: 320·224 // 240 = 298
        assert_eq!(st_short_side_size(320, 240, 224), (298, 224));
    }
}
