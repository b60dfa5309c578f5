//! Small helpers shared by the unit tests and the integration tests in `tests/`.

use dfdx::prelude::*;
use std::sync::Mutex;

static HOOK: Mutex<()> = Mutex::new(());

/// Whether `grads` holds an entry for `t`.
///
/// dfdx 0.13 has no public "contains" on `Gradients` (`get_ref_checked` is crate-private) and
/// `Gradients::get` panics on a missing entry, so this asks `get` under `catch_unwind`, with the
/// panic message silenced while it does.
pub fn has_grad<S: Shape, E: Dtype, D: Storage<E>>(grads: &Gradients<E, D>, t: &Tensor<S, E, D>) -> bool {
    let _guard = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| grads.get(t))).is_ok();
    std::panic::set_hook(hook);
    found
}

/// Hex sha256 of `bytes` (fixture checksums).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
