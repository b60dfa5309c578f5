// Softmax cross-entropy with label smoothing, averaged over the batch (src/ops/loss.rs). f32.

// One thread per sample: row_loss[b] = -sum_k q_k (z_k - lse) and grad[b, k] = (softmax(z)_k - q_k) / B,
// with q = (1 - eps) onehot(label) + eps / K.
extern "C" __global__ void ce_rows(size_t batch, size_t k, float eps, const float *z, const unsigned int *labels,
                                   float *row_loss, float *grad) {
    size_t b = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (b >= batch) return;
    const float *zr = z + b * k;
    float m = -__int_as_float(0x7f800000); // -inf (NVRTC has no math.h, so no INFINITY)
    for (size_t j = 0; j < k; j++) m = fmaxf(m, zr[j]);
    float s = 0.0f;
    for (size_t j = 0; j < k; j++) s += expf(zr[j] - m);
    float lse = m + logf(s);
    float loss = 0.0f;
    for (size_t j = 0; j < k; j++) {
        float q = eps / (float)k + (j == labels[b] ? 1.0f - eps : 0.0f);
        loss -= q * (zr[j] - lse);
        grad[b * k + j] = (expf(zr[j] - lse) - q) / (float)batch;
    }
    row_loss[b] = loss;
}

// One thread: loss[0] = mean of row_loss (a fixed order: the same bits on every run).
extern "C" __global__ void ce_mean(size_t batch, const float *row_loss, float *loss) {
    if (blockIdx.x * blockDim.x + threadIdx.x != 0) return;
    float acc = 0.0f;
    for (size_t b = 0; b < batch; b++) acc += row_loss[b];
    loss[0] = acc / (float)batch;
}

// gz[i] += grad[i] * gl[0] (gl: the loss's own gradient, a device scalar)
extern "C" __global__ void ce_bwd(size_t n, const float *grad, const float *gl, float *gz) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) gz[i] += grad[i] * gl[0];
}
