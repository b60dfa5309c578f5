// The parts of a linear layer (src/ops/linear.rs) that are not GEMMs; the GEMMs run on cuBLAS. f32.

// y[r, o] = b[o] (the bias, before the GEMM adds x W^T on top)
extern "C" __global__ void bias_rows(size_t rows, size_t n, const float *b, float *y) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < rows * n) y[i] = b[i % n];
}

// gb[o] += sum_r gy[r, o] (the bias gradient; one thread per column)
extern "C" __global__ void column_sums(size_t rows, size_t n, const float *gy, float *gb) {
    size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (o >= n) return;
    float acc = 0.0f;
    for (size_t r = 0; r < rows; r++) acc += gy[r * n + o];
    gb[o] += acc;
}
