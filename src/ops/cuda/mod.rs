//! CUDA kernels for our own ops (feature `cuda` runs them; the sources are here in every build).
//!
//! Each op family has one CUDA C file next to this one, written in the simplest form: one thread per
//! output element (per row for row reductions; a warp per row for attention's softmax), f32,
//! `extern "C"` names. The CPU code in
//! [`crate::ops`] is the reference they follow line by line; the GPU tests (`tests/gpu.rs`) compare the
//! two on a GPU. They are compiled at run time by NVRTC (`cudarc::nvrtc`, no GPU needed to compile),
//! for the GPU at hand: no compute capability is fixed at build time and no CUDA library version is
//! pinned. The GEMMs of the linear layers and of attention (strided-batched) run on cuBLAS.
//!
//! Tests: `kernel_sources_compile_with_nvcc` (every build, when `nvcc` is on PATH) and
//! `every_kernel_compiles_with_nvrtc` (feature `cuda`) compile every source and check that every
//! kernel listed here is in the PTX, and that every kernel in a source is listed.

#[cfg(feature = "cuda")]
pub mod gpu;
pub mod plan;

/// One CUDA C source: the module name it is loaded under, its text, and its kernels.
pub struct Source {
    pub module: &'static str,
    pub file: &'static str,
    pub text: &'static str,
    pub kernels: &'static [&'static str],
}

/// Every kernel source of the kit.
pub const SOURCES: &[Source] = &[
    Source {
        module: "va_elementwise",
        file: "elementwise.cu",
        text: include_str!("elementwise.cu"),
        kernels: &["add_fwd", "axpy", "mask_fwd", "mask_bwd", "mean_frames_fwd", "mean_frames_bwd", "dot_rows"],
    },
    Source {
        module: "va_activation",
        file: "activation.cu",
        text: include_str!("activation.cu"),
        kernels: &["act_fwd", "act_bwd"],
    },
    Source {
        module: "va_layer_norm",
        file: "layer_norm.cu",
        text: include_str!("layer_norm.cu"),
        kernels: &["ln_stats", "ln_apply", "ln_bwd_x", "ln_bwd_params"],
    },
    Source {
        module: "va_dwconv3d",
        file: "dwconv3d.cu",
        text: include_str!("dwconv3d.cu"),
        kernels: &["dwconv_fwd", "dwconv_bwd_x", "dwconv_bwd_params"],
    },
    Source {
        module: "va_attention",
        file: "attention.cu",
        text: include_str!("attention.cu"),
        kernels: &["attn_softmax", "attn_probs_from_lse", "attn_softmax_bwd"],
    },
    Source {
        module: "va_linear",
        file: "linear.cu",
        text: include_str!("linear.cu"),
        kernels: &["bias_rows", "column_sums"],
    },
    Source {
        module: "va_loss",
        file: "loss.cu",
        text: include_str!("loss.cu"),
        kernels: &["ce_rows", "ce_mean", "ce_bwd"],
    },
    Source {
        module: "va_tokens",
        file: "tokens.cu",
        text: include_str!("tokens.cu"),
        kernels: &[
            "patchify",
            "cls_select",
            "cls_select_bwd",
            "patch_select",
            "patch_select_bwd",
            "add_to_patches",
            "embed_tokens",
            "embed_tokens_bwd_pos",
            "embed_tokens_bwd_tem",
            "temporal_shift",
            "temporal_shift_bwd",
            "average_cls",
            "average_cls_bwd",
            "set_prompts",
            "set_prompts_bwd_x",
            "set_prompts_bwd_p",
        ],
    },
    Source {
        module: "va_optim",
        file: "optim.cu",
        text: include_str!("optim.cu"),
        kernels: &["adamw_update", "nonfinite_flag"],
    },
];

/// The kernel names a source defines (`extern "C" __global__ void NAME(`), in order.
pub fn defined_kernels(text: &str) -> Vec<&str> {
    text.split("extern \"C\" __global__ void ")
        .skip(1)
        .map(|rest| rest.split('(').next().unwrap_or("").trim())
        .collect()
}

/// The `.entry` names of a PTX text.
pub fn ptx_entries(ptx: &str) -> Vec<&str> {
    ptx.lines()
        .filter_map(|l| l.trim().strip_prefix(".visible .entry "))
        .map(|rest| rest.split('(').next().unwrap_or("").trim())
        .collect()
}

/// Checks that the PTX of `src` has exactly the kernels it lists; the error names the file.
pub fn check_ptx(src: &Source, ptx: &str) -> Result<(), String> {
    let mut want: Vec<&str> = src.kernels.to_vec();
    let mut got = ptx_entries(ptx);
    want.sort_unstable();
    got.sort_unstable();
    if want != got {
        return Err(format!("{}: the PTX has kernels {got:?}, the list in ops/cuda/mod.rs has {want:?}", src.file));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel a source defines is listed in [`SOURCES`] and every listed kernel is defined (a
    /// kernel left out of the list would never be loaded).
    #[test]
    fn every_kernel_in_the_sources_is_listed() {
        for s in SOURCES {
            assert_eq!(defined_kernels(s.text), s.kernels, "{}: kernels defined vs listed", s.file);
        }
        assert_eq!(SOURCES.iter().map(|s| s.kernels.len()).sum::<usize>(), 42);
    }

    /// Every source compiles with the toolkit's `nvcc` to PTX (no GPU needed), and its PTX holds every
    /// listed kernel. Skips, saying so, when `nvcc` is not on PATH (the CUDA toolkit is not installed;
    /// CI installs it).
    #[test]
    fn kernel_sources_compile_with_nvcc() {
        if std::process::Command::new("nvcc").arg("--version").output().is_err() {
            eprintln!("SKIPPED kernel_sources_compile_with_nvcc: no `nvcc` on PATH (install the CUDA toolkit)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("va-kernels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for s in SOURCES {
            let (cu, ptx) = (dir.join(s.file), dir.join(format!("{}.ptx", s.module)));
            std::fs::write(&cu, s.text).unwrap();
            let out = std::process::Command::new("nvcc")
                .args(["--ptx", "-arch=compute_52", "-o"])
                .arg(&ptx)
                .arg(&cu)
                .output()
                .expect("nvcc runs");
            assert!(out.status.success(), "nvcc failed on {}:\n{}", s.file, String::from_utf8_lossy(&out.stderr));
            check_ptx(s, &std::fs::read_to_string(&ptx).unwrap()).unwrap();
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A source with a kernel missing from its list fails the PTX check (the check can fail).
    #[test]
    fn ptx_check_names_a_missing_kernel() {
        let ptx = ".visible .entry add_fwd(\n.visible .entry axpy(\n";
        let s = Source { module: "m", file: "x.cu", text: "", kernels: &["add_fwd"] };
        let e = check_ptx(&s, ptx).unwrap_err();
        assert!(e.contains("x.cu") && e.contains("axpy"), "{e}");
    }
}

/// NVRTC (feature `cuda`; not with `ci-check`, which links no CUDA library).
#[cfg(all(test, feature = "cuda", not(feature = "ci-check")))]
mod nvrtc_tests {
    use super::*;

    /// Every source compiles with NVRTC, the compiler the kit uses at run time (it needs the NVRTC
    /// library, not a GPU), and its PTX holds exactly the listed kernels.
    #[test]
    fn every_kernel_compiles_with_nvrtc() {
        for s in SOURCES {
            let ptx = cudarc::nvrtc::compile_ptx(s.text).unwrap_or_else(|e| panic!("NVRTC on {}: {e:?}", s.file));
            check_ptx(s, &ptx.to_src()).unwrap();
        }
    }
}
