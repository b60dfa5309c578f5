//! The geometry of a video batch in token space, which every op over frames or patches reads.

/// B videos × T frames × an H × W grid of positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grid {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub w: usize,
}

impl Grid {
    pub fn frames(&self) -> usize {
        self.b * self.t
    }
    pub fn positions(&self) -> usize {
        self.h * self.w
    }
}
