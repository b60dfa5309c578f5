//! Synthetic tasks for the embedded benchmark: stills for pre-training the small backbone, and two
//! video tasks that stand in for the papers' datasets.
//!
//! Every pixel is computed with integer arithmetic from a seeded generator of our own
//! ([`Rng`], SplitMix64), so a (task, geometry, seed, index) gives the same bytes on every platform:
//! geometry is fixed point (1/8 pixel), rotation uses a table of 64 angles as integers, coverage is
//! counted on 4×4 sub-samples per pixel. Floats appear only in the last step, the CLIP
//! normalisation `(v/255 − mean)/std`, which is two correctly rounded IEEE operations per value.
//!
//! | task | stands in for | the class is |
//! |---|---|---|
//! | [`Task::Shapes`] | CLIP's image pre-training | the object's shape × colour × texture (one still) |
//! | [`Task::Appearance`] | Kinetics-400 | the object's colour; its shape, texture, motion and the background are noise |
//! | [`Task::Motion`] | Something-Something v2 | what the object does; every class comes with its time reversal |
//!
//! Shape legend: N clips · T frames · S×S pixels (square frames) · 3 channels.

use std::path::Path;

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::clip::vit::Video;
use crate::video::transform::{CLIP_MEAN, CLIP_STD};
use crate::video::Frame;

// ANCHOR: rng
/// SplitMix64 (Steele, Lea, Flood 2014): 64-bit state, integer-only, identical on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The generator of item `index` of a stream `seed`: independent streams per clip, so a clip
    /// can be made without making the ones before it.
    pub fn for_item(seed: u64, index: u64) -> Self {
        let mut r = Rng(seed ^ 0x5851_f42d_4c95_7f2d);
        let a = r.next_u64();
        Rng(a ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2⁻⁵⁰ for our n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
}
// ANCHOR_END: rng

/// Frame size and clip length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Geometry {
    /// Square frames of `size`×`size` pixels.
    pub size: usize,
    /// Frames per clip (1 for stills).
    pub frames: usize,
}

impl Geometry {
    /// The benchmark's clips: 32×32 pixels, 4 frames (see `fixtures/proxy/STUDY.md`).
    pub const PROXY: Geometry = Geometry { size: 32, frames: 4 };

    /// One frame of the same size, for the image task.
    pub fn still(self) -> Geometry {
        Geometry { frames: 1, ..self }
    }
}

// ANCHOR: glyphs
/// The eight shapes, 8×8 cells each (row 0 at the top), none with a rotational symmetry, so that
/// the sense of a rotation is visible. Names are what they look like.
pub const SHAPES: [(&str, [u8; 8]); 8] = [
    ("L", [0b11000000, 0b11000000, 0b11000000, 0b11000000, 0b11000000, 0b11000000, 0b11111111, 0b11111111]),
    ("T", [0b11111111, 0b11111111, 0b00011000, 0b00011000, 0b00011000, 0b00011000, 0b00011000, 0b00011000]),
    ("F", [0b11111111, 0b11111111, 0b11000000, 0b11111100, 0b11111100, 0b11000000, 0b11000000, 0b11000000]),
    ("P", [0b11111100, 0b11111110, 0b11000110, 0b11000110, 0b11111110, 0b11111100, 0b11000000, 0b11000000]),
    ("arrow", [0b00001000, 0b00001100, 0b11111110, 0b11111111, 0b11111111, 0b11111110, 0b00001100, 0b00001000]),
    ("wedge", [0b10000000, 0b11000000, 0b11100000, 0b11110000, 0b11111000, 0b11111100, 0b11111110, 0b11111111]),
    ("U", [0b11000011, 0b11000011, 0b11000011, 0b11000011, 0b11000011, 0b11000011, 0b11111111, 0b11111111]),
    ("h", [0b11000000, 0b11000000, 0b11000000, 0b11111100, 0b11111110, 0b11000110, 0b11000110, 0b11000110]),
];

/// Eight saturated colours (backgrounds are low-saturation and darker, see [`Background`]).
pub const COLOURS: [(&str, [u8; 3]); 8] = [
    ("red", [225, 45, 40]),
    ("green", [50, 200, 70]),
    ("blue", [55, 95, 240]),
    ("yellow", [240, 220, 50]),
    ("cyan", [50, 215, 225]),
    ("magenta", [220, 60, 210]),
    ("orange", [250, 145, 35]),
    ("white", [245, 245, 245]),
];

/// Surface patterns, in the object's own (rotated, scaled) cells so that they move with it.
pub const TEXTURES: [&str; 3] = ["solid", "stripes", "checker"];
// ANCHOR_END: glyphs

/// cos(2πk/64)·4096 rounded, k = 0..=16 (the first quadrant; the rest by symmetry).
const COS_Q: [i64; 17] =
    [4096, 4076, 4017, 3920, 3784, 3612, 3406, 3166, 2896, 2598, 2276, 1931, 1567, 1189, 799, 401, 0];

/// (cos, sin)·4096 of angle a·2π/64.
fn cos_sin(a: i64) -> (i64, i64) {
    let a = a.rem_euclid(64);
    let c = |k: i64| -> i64 {
        let k = k.rem_euclid(64);
        match k {
            0..=16 => COS_Q[k as usize],
            17..=32 => -COS_Q[(32 - k) as usize],
            33..=48 => -COS_Q[(k - 32) as usize],
            _ => COS_Q[(64 - k) as usize],
        }
    };
    (c(a), c(a - 16))
}

/// Sub-pixel unit: positions and sizes are in 1/8 pixel.
const SUB: i64 = 8;

/// One object in one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Object {
    pub shape: usize,
    pub colour: usize,
    pub texture: usize,
    /// Centre, in 1/8 pixel.
    pub x: i64,
    pub y: i64,
    /// Half the side of the 8×8 glyph square, in 1/8 pixel.
    pub half: i64,
    /// Angle in 64ths of a turn; increasing turns the object clockwise on screen (y points down).
    pub angle: i64,
}

impl Object {
    /// The object's colour at sample (sx, sy) (in 1/8 pixel), or None outside it.
    fn sample(&self, sx: i64, sy: i64) -> Option<[u8; 3]> {
        let (dx, dy) = (sx - self.x, sy - self.y);
        if dx.abs() > 2 * self.half || dy.abs() > 2 * self.half {
            return None;
        }
        let (c, s) = cos_sin(self.angle);
        // screen offset -> object frame: rotate by −angle
        let u = c * dx + s * dy;
        let v = -s * dx + c * dy;
        let span = self.half * 4096; // u, v in [−span, span) are inside the glyph square
        let cell = |w: i64| (w + span).div_euclid(span / 4); // 8 cells over [−span, span)
        let (cu, cv) = (cell(u), cell(v));
        if !(0..8).contains(&cu) || !(0..8).contains(&cv) {
            return None;
        }
        let row = SHAPES[self.shape].1[cv as usize];
        if row & (0x80 >> cu) == 0 {
            return None;
        }
        let base = COLOURS[self.colour].1;
        let dark = match self.texture {
            1 => cv % 2 == 1,
            2 => (cu + cv) % 2 == 1,
            _ => false,
        };
        Some(if dark { base.map(|b| (b as u16 * 7 / 10) as u8) } else { base })
    }
}

/// A static background (the camera does not move).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Background {
    Flat([u8; 3]),
    /// From `a` to `b` along x (`vertical = false`) or y.
    Gradient {
        a: [u8; 3],
        b: [u8; 3],
        vertical: bool,
    },
    /// Per-pixel noise around a level (values drawn once per clip).
    Noise(Vec<u8>),
    /// Bands of `period` pixels alternating `a` and `b`, along x or y.
    Stripes {
        a: [u8; 3],
        b: [u8; 3],
        period: usize,
        vertical: bool,
    },
}

impl Background {
    /// One of the four kinds, in greys tinted slightly, between 15 and 165 (darker than most
    /// objects and never saturated).
    pub fn random(rng: &mut Rng, size: usize) -> Self {
        let grey = |rng: &mut Rng| {
            let g = rng.range(15, 150);
            [0, 1, 2].map(|_| (g + rng.range(0, 15)) as u8)
        };
        match rng.below(4) {
            0 => Background::Flat(grey(rng)),
            1 => Background::Gradient { a: grey(rng), b: grey(rng), vertical: rng.coin() },
            2 => {
                let level = grey(rng);
                let n = size * size * 3;
                Background::Noise(
                    (0..n).map(|i| (level[i % 3] as i64 + rng.range(-15, 15)).clamp(0, 255) as u8).collect(),
                )
            }
            _ => Background::Stripes {
                a: grey(rng),
                b: grey(rng),
                period: rng.range(2, 4) as usize,
                vertical: rng.coin(),
            },
        }
    }

    fn pixel(&self, x: usize, y: usize, size: usize) -> [u8; 3] {
        match self {
            Background::Flat(c) => *c,
            Background::Gradient { a, b, vertical } => {
                let p = if *vertical { y } else { x } as i64;
                let d = (size - 1).max(1) as i64;
                [0, 1, 2].map(|c| ((a[c] as i64 * (d - p) + b[c] as i64 * p) / d) as u8)
            }
            Background::Noise(v) => {
                let i = (y * size + x) * 3;
                [v[i], v[i + 1], v[i + 2]]
            }
            Background::Stripes { a, b, period, vertical } => {
                let p = if *vertical { y } else { x };
                if (p / period) % 2 == 0 {
                    *a
                } else {
                    *b
                }
            }
        }
    }
}

/// Draws `objects` (later ones on top) over `bg` into an RGB frame, 4×4 sub-samples per pixel.
pub fn render(bg: &Background, objects: &[Object], size: usize) -> Frame {
    let mut rgb = vec![0u8; size * size * 3];
    for y in 0..size {
        for x in 0..size {
            let back = bg.pixel(x, y, size);
            let mut acc = [0u32; 3];
            for ky in 0..4 {
                for kx in 0..4 {
                    // sample centres at (x + (2k+1)/8) pixels
                    let (sx, sy) = (SUB * x as i64 + 2 * kx + 1, SUB * y as i64 + 2 * ky + 1);
                    let c = objects.iter().rev().find_map(|o| o.sample(sx, sy)).unwrap_or(back);
                    for ch in 0..3 {
                        acc[ch] += c[ch] as u32;
                    }
                }
            }
            let i = (y * size + x) * 3;
            for ch in 0..3 {
                rgb[i + ch] = ((acc[ch] + 8) / 16) as u8;
            }
        }
    }
    Frame::new(size, size, rgb)
}

// ANCHOR: motion_kinds
/// What the object does in a motion clip. Each kind is a class; its time reversal is the next
/// class (see [`MOTION_CLASSES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Motion {
    /// Translation to the right (reversed: to the left).
    Right,
    /// Translation down (reversed: up).
    Down,
    /// Clockwise rotation in place (reversed: anticlockwise).
    Clockwise,
    /// Growing: the object approaches (reversed: recedes).
    Approach,
    /// Absent, then present from some frame on (reversed: disappears).
    Appear,
    /// Two different objects side by side, the left one shown first, then only the right one
    /// (reversed: right one first). "Something then something else", with the roles fixed by place.
    LeftThenRight,
    /// No motion (only in the appearance task).
    Still,
}

/// The motion task's 12 classes: six kinds, each forwards and reversed in time.
pub const MOTION_CLASSES: [(&str, Motion, bool); 12] = [
    ("move right", Motion::Right, false),
    ("move left", Motion::Right, true),
    ("move down", Motion::Down, false),
    ("move up", Motion::Down, true),
    ("turn clockwise", Motion::Clockwise, false),
    ("turn anticlockwise", Motion::Clockwise, true),
    ("approach", Motion::Approach, false),
    ("recede", Motion::Approach, true),
    ("appear", Motion::Appear, false),
    ("disappear", Motion::Appear, true),
    ("left then right", Motion::LeftThenRight, false),
    ("right then left", Motion::LeftThenRight, true),
];
// ANCHOR_END: motion_kinds

/// A clip's random choices, drawn once; frame t of the clip is a function of them and t.
#[derive(Clone, Debug)]
pub struct Scene {
    pub motion: Motion,
    pub background: Background,
    /// The object(s) at the start (t = 0) of the forward motion.
    pub objects: Vec<Object>,
    /// Travel (1/8 px), turn (64ths), growth (1/8 px) over the whole clip, or the switch frame.
    pub amount: i64,
}

impl Scene {
    /// Draws a scene. `attrs` fixes (shape, colour, texture) of the first object, or None for random.
    pub fn random(rng: &mut Rng, motion: Motion, g: Geometry, attrs: Option<(usize, usize, usize)>) -> Self {
        let background = Background::random(rng, g.size);
        let s = g.size as i64 * SUB;
        let (shape, colour, texture) =
            attrs.unwrap_or_else(|| (rng.below(8) as usize, rng.below(8) as usize, rng.below(3) as usize));
        // glyph half-side 5..8 px (objects 10..16 px on 32 px frames), scaled with the frame
        let half = rng.range(s * 5 / 32, s / 4);
        let angle = rng.range(0, 63);
        let mut o = Object { shape, colour, texture, x: 0, y: 0, half, angle };
        let place = |rng: &mut Rng, half: i64, extra: i64| rng.range(half, (s - half - extra).max(half));
        let (amount, objects) = match motion {
            Motion::Right | Motion::Down => {
                // 30–45 % of the frame over the clip
                let d = rng.range(s * 3 / 10, s * 9 / 20);
                let along = place(rng, half, d);
                let across = place(rng, half, 0);
                (o.x, o.y) = if motion == Motion::Right { (along, across) } else { (across, along) };
                (d, vec![o])
            }
            Motion::Clockwise => {
                (o.x, o.y) = (place(rng, half, 0), place(rng, half, 0));
                (rng.range(16, 24), vec![o]) // 90–135° over the clip
            }
            Motion::Approach => {
                // from half-side 2.5–3.5 px up to 6.5–8 px (on 32 px frames)
                o.half = rng.range(s * 5 / 64, s * 7 / 64);
                let end = rng.range(s * 13 / 64, s / 4);
                (o.x, o.y) = (place(rng, end, 0), place(rng, end, 0));
                (end - o.half, vec![o])
            }
            Motion::Appear => {
                (o.x, o.y) = (place(rng, half, 0), place(rng, half, 0));
                let frames = g.frames as i64;
                (rng.range(frames / 4, frames - frames / 4), vec![o]) // first frame shown
            }
            Motion::LeftThenRight => {
                let mut b = o;
                b.shape = (o.shape + 1 + rng.below(7) as usize) % 8;
                b.colour = rng.below(8) as usize;
                b.texture = rng.below(3) as usize;
                b.angle = rng.range(0, 63);
                let m = s / 2;
                o.x = rng.range(half, (m - half / 2).max(half));
                b.x = rng.range((m + half / 2).min(s - half), s - half);
                o.y = place(rng, half, 0);
                b.y = place(rng, half, 0);
                let frames = g.frames as i64;
                (rng.range(frames / 4 + 1, frames - frames / 4 - 1).max(1), vec![o, b])
                // first frame of b
            }
            Motion::Still => {
                (o.x, o.y) = (place(rng, half, 0), place(rng, half, 0));
                (0, vec![o])
            }
        };
        Self { motion, background, objects, amount }
    }

    /// The objects visible at frame `t` of `frames` (forward time).
    pub fn objects_at(&self, t: usize, frames: usize) -> Vec<Object> {
        let (t, last) = (t as i64, (frames as i64 - 1).max(1));
        let mut o = self.objects[0];
        match self.motion {
            Motion::Right => o.x += self.amount * t / last,
            Motion::Down => o.y += self.amount * t / last,
            Motion::Clockwise => o.angle += self.amount * t / last,
            Motion::Approach => o.half += self.amount * t / last,
            Motion::Appear if t < self.amount => return vec![],
            Motion::LeftThenRight if t >= self.amount => return vec![self.objects[1]],
            _ => {}
        }
        vec![o]
    }

    /// The clip's frames, forwards or reversed in time.
    pub fn frames(&self, frames: usize, size: usize, reversed: bool) -> Vec<Frame> {
        (0..frames)
            .map(|t| {
                let tt = if reversed { frames - 1 - t } else { t };
                render(&self.background, &self.objects_at(tt, frames), size)
            })
            .collect()
    }
}

// ANCHOR: tasks
/// A task: how clips are drawn and what decides their label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Task {
    /// **Stands in for CLIP's image pre-training.** One still per example, one object on a varied
    /// background at a random place, size and angle; the label names the object completely: shape
    /// × colour × texture (8 × 8 × 3 = 192 classes). A backbone that solves it must see shape (at
    /// any angle and size), colour and surface pattern: the appearance knowledge CLIP brings.
    Shapes,
    /// **Stands in for Kinetics-400**: the class is decided by what is in the clip (the object's
    /// colour, 8 classes), while the object moves in a random way (any motion of the motion task or
    /// none) with random shape, texture and background. On Kinetics a frozen CLIP averaged over
    /// frames already scores well: appearance decides most classes and motion adds little. (The
    /// first design used the shape: every method was level there too, but at the backbone's limit,
    /// about 55 %; `fixtures/proxy/STUDY.md`.)
    Appearance,
    /// **Stands in for Something-Something v2**: the class is what the object does (12 classes,
    /// [`MOTION_CLASSES`]), with random objects, so every object appears in every class. The classes
    /// come in pairs that are each other's time reversal: a clip of "move left" is a clip of "move
    /// right" played backwards, so the two have the same frames in the other order. A model that
    /// averages frame features cannot tell the two apart (at most 50 % on the pair); on SSv2 too,
    /// "pushing left to right" and "right to left" show the same frames, and frame-averaging CLIP
    /// is weak.
    Motion,
}
// ANCHOR_END: tasks

impl Task {
    pub fn num_classes(self) -> usize {
        match self {
            Task::Shapes => SHAPES.len() * COLOURS.len() * TEXTURES.len(),
            Task::Appearance => COLOURS.len(),
            Task::Motion => MOTION_CLASSES.len(),
        }
    }

    /// The dataset the task stands in for.
    pub fn stands_in_for(self) -> &'static str {
        match self {
            Task::Shapes => "CLIP's image pre-training",
            Task::Appearance => "Kinetics-400",
            Task::Motion => "Something-Something v2",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Task::Shapes => "shapes",
            Task::Appearance => "appearance",
            Task::Motion => "motion",
        }
    }

    pub fn class_name(self, label: usize) -> String {
        match self {
            Task::Shapes => {
                let (s, c, x) = shapes_label_parts(label);
                format!("{} {} {}", TEXTURES[x], COLOURS[c].0, SHAPES[s].0)
            }
            Task::Appearance => COLOURS[label].0.to_string(),
            Task::Motion => MOTION_CLASSES[label].0.to_string(),
        }
    }

    /// Clip `index` of the stream `seed`: its frames and label (see [`Task::scene`]).
    pub fn clip(self, g: Geometry, seed: u64, index: u64) -> (Vec<Frame>, usize) {
        self.clip_paired(g, seed, index, true)
    }

    /// As [`Task::clip`]; with `paired = false` every motion clip has a scene of its own (no clip's
    /// time reversal is in the split): see [`Task::scene_paired`].
    pub fn clip_paired(self, g: Geometry, seed: u64, index: u64, paired: bool) -> (Vec<Frame>, usize) {
        let g = if self == Task::Shapes { g.still() } else { g };
        let (scene, reversed, label) = self.scene_paired(g, seed, index, paired);
        (scene.frames(g.frames, g.size, reversed), label)
    }

    // ANCHOR: scene
    /// The scene of clip `index` of the stream `seed`, whether it is played backwards, and its
    /// label. The label is `index mod classes` (balanced splits); the rest comes from
    /// `Rng::for_item`. In the motion task clips `2j` and `2j + 1` share one scene: the first plays
    /// it forwards (class 2k), the second backwards (class 2k + 1), so every clip's time reversal is
    /// in the same split under the partner label.
    pub fn scene(self, g: Geometry, seed: u64, index: u64) -> (Scene, bool, usize) {
        self.scene_paired(g, seed, index, true)
    }
    // ANCHOR_END: scene

    /// As [`Task::scene`]; `paired = false` draws every motion clip's scene from its own index, so
    /// the split holds no clip's reversal (the distribution is the same: reversal-symmetric).
    pub fn scene_paired(self, g: Geometry, seed: u64, index: u64, paired: bool) -> (Scene, bool, usize) {
        let label = (index % self.num_classes() as u64) as usize;
        match self {
            Task::Shapes => {
                let mut rng = Rng::for_item(seed, index);
                let attrs = shapes_label_parts(label);
                (Scene::random(&mut rng, Motion::Still, g.still(), Some(attrs)), false, label)
            }
            Task::Appearance => {
                let mut rng = Rng::for_item(seed, index);
                const NUISANCE: [Motion; 5] =
                    [Motion::Right, Motion::Down, Motion::Clockwise, Motion::Approach, Motion::Still];
                let motion = NUISANCE[rng.below(5) as usize];
                let reversed = rng.coin();
                let attrs = (rng.below(8) as usize, label, rng.below(3) as usize);
                (Scene::random(&mut rng, motion, g, Some(attrs)), reversed, label)
            }
            Task::Motion => {
                let mut rng = if paired { Rng::for_item(seed, index / 2) } else { Rng::for_item(seed ^ 0xface, index) };
                let (_, motion, reversed) = MOTION_CLASSES[label];
                (Scene::random(&mut rng, motion, g, None), reversed, label)
            }
        }
    }
}

/// Shapes-task label → (shape, colour, texture).
pub fn shapes_label_parts(label: usize) -> (usize, usize, usize) {
    (label / 24, (label / 3) % 8, label % 3)
}

/// A generated split, kept as bytes: N clips of T frames of S×S RGB.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub task: Task,
    pub geometry: Geometry,
    pub seed: u64,
    /// (N, T, S, S, 3) bytes.
    pub pixels: Vec<u8>,
    pub labels: Vec<usize>,
}

impl Dataset {
    /// Clips `0..n` of the stream `seed` (rayon over clips; the bytes do not depend on threads).
    pub fn generate(task: Task, geometry: Geometry, n: usize, seed: u64) -> Self {
        Self::generate_range(task, geometry, 0, n, seed)
    }

    /// Clips `start..start + n` of the stream `seed` (a fresh batch of an endless stream).
    pub fn generate_range(task: Task, geometry: Geometry, start: u64, n: usize, seed: u64) -> Self {
        Self::generate_range_paired(task, geometry, start, n, seed, true)
    }

    /// As [`Dataset::generate_range`], paired or not (see [`Task::scene_paired`]).
    pub fn generate_range_paired(
        task: Task,
        geometry: Geometry,
        start: u64,
        n: usize,
        seed: u64,
        paired: bool,
    ) -> Self {
        use rayon::prelude::*;
        let g = if task == Task::Shapes { geometry.still() } else { geometry };
        let clips: Vec<(Vec<Frame>, usize)> =
            (start..start + n as u64).into_par_iter().map(|i| task.clip_paired(g, seed, i, paired)).collect();
        let mut pixels = Vec::with_capacity(n * g.frames * g.size * g.size * 3);
        let mut labels = Vec::with_capacity(n);
        for (frames, label) in clips {
            for f in frames {
                pixels.extend_from_slice(&f.rgb);
            }
            labels.push(label);
        }
        Self { task, geometry: g, seed, pixels, labels }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn clip_bytes(&self) -> usize {
        self.geometry.frames * self.geometry.size * self.geometry.size * 3
    }

    /// Clip `i` as frames.
    pub fn frames(&self, i: usize) -> Vec<Frame> {
        let (s, n) = (self.geometry.size, self.geometry.size * self.geometry.size * 3);
        self.pixels[i * self.clip_bytes()..(i + 1) * self.clip_bytes()]
            .chunks_exact(n)
            .map(|c| Frame::new(s, s, c.to_vec()))
            .collect()
    }

    // ANCHOR: batch
    /// Clips `idx` as the models' input: (B, 3, T, S, S), CLIP-normalised as
    /// [`crate::video::transform::st_normalize`] does it, and their labels.
    pub fn batch(&self, idx: &[usize], dev: &Cpu) -> (Video<f32, Cpu>, Vec<usize>) {
        let (t, s) = (self.geometry.frames, self.geometry.size);
        let mut out = Vec::with_capacity(idx.len() * 3 * t * s * s);
        for &i in idx {
            out.extend(self.clip_values(i));
        }
        let video = dev.tensor_from_vec(out, (idx.len(), Const::<3>, t, s, s));
        (video, idx.iter().map(|&i| self.labels[i]).collect())
    }

    /// Clip `i` as one model input, (3, T, S, S) values, CLIP-normalised.
    pub fn clip_values(&self, i: usize) -> Vec<f32> {
        let (t, s) = (self.geometry.frames, self.geometry.size);
        let lut: [[f32; 256]; 3] =
            std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]));
        let clip = &self.pixels[i * self.clip_bytes()..(i + 1) * self.clip_bytes()];
        let mut out = vec![0f32; 3 * t * s * s];
        for ti in 0..t {
            for p in 0..s * s {
                for c in 0..3 {
                    // (T, S·S, 3) bytes -> (3, T, S·S) floats
                    out[(c * t + ti) * s * s + p] = lut[c][clip[(ti * s * s + p) * 3 + c] as usize];
                }
            }
        }
        out
    }
    // ANCHOR_END: batch

    /// SHA-256 of the bytes and labels (for snapshots and cache keys).
    pub fn checksum(&self) -> String {
        let mut bytes = self.pixels.clone();
        bytes.extend(self.labels.iter().flat_map(|&l| (l as u32).to_le_bytes()));
        crate::testing::sha256_hex(&bytes)
    }
}

/// Writes a PNG contact sheet: one row per class (the first `per_class` clips of each class from
/// the stream `seed`, frames left to right, a gap between clips), each pixel drawn `zoom`×`zoom`.
pub fn contact_sheet(
    task: Task,
    g: Geometry,
    seed: u64,
    per_class: usize,
    zoom: usize,
    path: &Path,
) -> anyhow::Result<()> {
    let g = if task == Task::Shapes { g.still() } else { g };
    let k = task.num_classes();
    let gap = 4;
    let clip_w = g.frames * (g.size + 1) + gap;
    let (w, h) = (per_class * clip_w * zoom, k * (g.size + 2) * zoom);
    let mut img = image::RgbImage::from_pixel(w as u32, h as u32, image::Rgb([255, 255, 255]));
    for class in 0..k {
        for j in 0..per_class {
            let (frames, label) = task.clip(g, seed, (j * k + class) as u64);
            debug_assert_eq!(label, class);
            for (t, f) in frames.iter().enumerate() {
                let (x0, y0) = (j * clip_w + t * (g.size + 1), class * (g.size + 2));
                for y in 0..g.size {
                    for x in 0..g.size {
                        let i = (y * g.size + x) * 3;
                        let px = image::Rgb([f.rgb[i], f.rgb[i + 1], f.rgb[i + 2]]);
                        for zy in 0..zoom {
                            for zx in 0..zoom {
                                img.put_pixel(((x0 + x) * zoom + zx) as u32, ((y0 + y) * zoom + zy) as u32, px);
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    img.save(path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}
