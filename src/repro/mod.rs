//! The published tables, reproduced: load the published numbers, compute ours, print both.

pub mod published;
