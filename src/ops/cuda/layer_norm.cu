// LayerNorm over the last axis (src/ops/layer_norm.rs): torch semantics, biased variance, eps inside
// the square root. stats holds (mean, rstd) per row. f32.

// One thread per row: stats[2r] = mean, stats[2r+1] = 1/sqrt(var + eps) (two passes, as the CPU op).
extern "C" __global__ void ln_stats(size_t rows, size_t c, float eps, const float *x, float *stats) {
    size_t r = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float *xr = x + r * c;
    float mean = 0.0f;
    for (size_t j = 0; j < c; j++) mean += xr[j];
    mean /= (float)c;
    float var = 0.0f;
    for (size_t j = 0; j < c; j++) {
        float d = xr[j] - mean;
        var += d * d;
    }
    var /= (float)c;
    stats[2 * r] = mean;
    stats[2 * r + 1] = rsqrtf(var + eps);
}

// One thread per element: y = (x - mean) * rstd * gamma + beta.
extern "C" __global__ void ln_apply(size_t rows, size_t c, const float *x, const float *stats, const float *gamma,
                                    const float *beta, float *y) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= rows * c) return;
    size_t r = i / c, j = i % c;
    y[i] = (x[i] - stats[2 * r]) * stats[2 * r + 1] * gamma[j] + beta[j];
}

// One thread per row: gx += (g - mean(g) - xhat * mean(g * xhat)) * rstd with g = gy * gamma.
extern "C" __global__ void ln_bwd_x(size_t rows, size_t c, const float *x, const float *stats, const float *gamma,
                                    const float *gy, float *gx) {
    size_t r = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float mean = stats[2 * r], rs = stats[2 * r + 1];
    const float *xr = x + r * c;
    const float *gr = gy + r * c;
    float mg = 0.0f, mgx = 0.0f;
    for (size_t j = 0; j < c; j++) {
        float g = gr[j] * gamma[j];
        mg += g;
        mgx += g * (xr[j] - mean);
    }
    mg /= (float)c;
    mgx = mgx / (float)c * rs;
    for (size_t j = 0; j < c; j++) {
        float xh = (xr[j] - mean) * rs;
        gx[r * c + j] += (gr[j] * gamma[j] - mg - xh * mgx) * rs;
    }
}

// One thread per channel: dgamma[j] += sum_r gy * xhat, dbeta[j] += sum_r gy. Either may be null.
extern "C" __global__ void ln_bwd_params(size_t rows, size_t c, const float *x, const float *stats, const float *gy,
                                         float *dgamma, float *dbeta) {
    size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (j >= c) return;
    float dg = 0.0f, db = 0.0f;
    for (size_t r = 0; r < rows; r++) {
        float g = gy[r * c + j];
        dg += g * (x[r * c + j] - stats[2 * r]) * stats[2 * r + 1];
        db += g;
    }
    if (dgamma) dgamma[j] += dg;
    if (dbeta) dbeta[j] += db;
}
