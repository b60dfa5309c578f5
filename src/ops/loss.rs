//! Softmax cross-entropy with optional label smoothing, averaged over the batch.

use dfdx::prelude::*;

use crate::device::{host, tensor, KitDevice, Real};

/// `mean_b [ −Σ_k q_bk · log softmax(z_b)_k ]` with `q = (1 − ε)·onehot(label) + ε/K`
/// (torch `CrossEntropyLoss(label_smoothing=ε)`). Backward: `(softmax(z) − q) / B`.
pub fn cross_entropy<X: Dim, E: Real, D: KitDevice<E>>(
    logits: Tensor<(usize, X), E, D, OwnedTape<E, D>>,
    labels: &[usize],
    smoothing: f64,
) -> Tensor<Rank0, E, D, OwnedTape<E, D>> {
    let (b, kd) = *logits.shape();
    let k = kd.size();
    assert_eq!(labels.len(), b, "cross_entropy: {} labels for a batch of {b}", labels.len());
    if let Some(bad) = labels.iter().find(|&&l| l >= k) {
        panic!("cross_entropy: label {bad} out of range for {k} classes");
    }
    let logits = match D::k_cross_entropy(logits, labels, smoothing) {
        Ok(loss) => return loss,
        Err(z) => z,
    };
    let dev = logits.device().clone();
    let (z, mut tape) = logits.split_tape();
    let zv = host(&z);
    let eps = smoothing;
    let mut grad = vec![E::zero(); b * k];
    let mut total = 0.0;
    for (i, row) in zv.chunks_exact(k).enumerate() {
        let m = row.iter().fold(f64::NEG_INFINITY, |a, v| a.max(v.f64()));
        let lse = m + row.iter().map(|v| (v.f64() - m).exp()).sum::<f64>().ln();
        for (j, v) in row.iter().enumerate() {
            let q = eps / k as f64 + if j == labels[i] { 1.0 - eps } else { 0.0 };
            total -= q * (v.f64() - lse);
            grad[i * k + j] = E::of(((v.f64() - lse).exp() - q) / b as f64);
        }
    }
    let loss = tensor(&dev, vec![E::of(total / b as f64)], ());
    let (zg, lg) = (z.ghost(), loss.ghost());
    tape.add_backward_op(move |grads| {
        let gl = dev.take(grads.get_or_alloc_mut(&lg)?)[0];
        dev.update(grads.get_or_alloc_mut(&zg)?, |gz| gz.iter_mut().zip(&grad).for_each(|(u, v)| *u += *v * gl))
    });
    loss.put_tape(tape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::*;

    /// Value against log-sum-exp by hand; gradient against central differences (with smoothing).
    #[test]
    fn cross_entropy_matches_definition_and_finite_differences() {
        let dev = Cpu::default();
        let z = dev.tensor_from_vec(rand_vec(1, 3 * 5), (3usize, 5usize));
        let labels = [4, 0, 2];
        let f = |v: &[f64]| {
            let mut t = 0.0;
            for (i, row) in v.chunks(5).enumerate() {
                let lse = row.iter().map(|x| x.exp()).sum::<f64>().ln();
                for (j, x) in row.iter().enumerate() {
                    let q = 0.1 / 5.0 + if j == labels[i] { 0.9 } else { 0.0 };
                    t -= q * (x - lse);
                }
            }
            t / 3.0
        };
        let loss = cross_entropy(z.leaky_trace(), &labels, 0.1);
        assert!((loss.retaped::<NoneTape>().as_vec()[0] - f(&z.as_vec())).abs() < 1e-12);
        let g = loss.backward();
        assert_close("dz", &g.get(&z).as_vec(), &numeric_grad(&z.as_vec(), f));
    }
}
