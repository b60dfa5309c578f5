//! # video-adapters
//!
//! Parameter-efficient image-to-video transfer learning, three papers side by side on one frozen
//! CLIP ViT, in Rust on dfdx:
//!
//! | paper | file | what it adds to the frozen ViT |
//! |---|---|---|
//! | ST-Adapter (NeurIPS 2022) | `st_adapter.rs` | bottleneck adapters with a depthwise 3D conv over the patch grid |
//! | AIM (ICLR 2023) | `aim.rs` | the frozen attention reused over time, spatial / temporal / joint adapters |
//! | MST-Adapter (IEICE 2024) | `mst_adapter.rs` | three multi-scale depthwise-conv branches, learned fusion, [CLS] token shift |
//!
//! Layers, bottom up: [`ops`] (our differentiable ops) → [`clip`] (the frozen backbone) →
//! [`count`] (parameters and FLOPs) → the three papers and the baselines → `repro` (the published
//! tables, side by side with what our code computes).

pub mod aim;
pub mod baselines;
pub mod bench;
pub mod clip;
pub mod context;
pub mod count;
pub mod data;
pub mod data_parallel;
pub mod device;
pub mod eval;
pub mod figures;
#[cfg(all(feature = "cuda", not(feature = "ci-check")))]
pub mod gpu_check;
pub mod init;
pub mod input;
pub mod io;
pub mod mst_adapter;
pub mod official;
pub mod ops;
pub mod optim;
pub mod param;
pub mod parity;
pub mod proxy;
pub mod recipe;
pub mod registry;
pub mod repro;
pub mod results;
pub mod st_adapter;
pub mod testing;
pub mod tools;
pub mod train;
pub mod video;

pub use context::Ctx;
pub use device::{KitDevice, Real};
