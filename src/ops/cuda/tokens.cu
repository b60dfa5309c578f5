// Token ops (src/ops/tokens.rs, src/clip/vit.rs patchify) on the stream (N = B*T, L, C), frame row
// b*T + t, CLS first. One thread per output element; f32. Backward kernels accumulate.

// Video (B, 3, T, H, W) -> patches (B*T, (H/p)*(W/p), 3*p*p), each patch channel-major then row-major,
// as a stride-p Conv2d's weight (C, 3, p, p) reads it.
extern "C" __global__ void patchify(size_t nb, size_t nt, size_t h, size_t w, size_t p, const float *video,
                                    float *out) {
    size_t gh = h / p, gw = w / p, k = 3 * p * p;
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= nb * nt * gh * gw * k) return;
    size_t e = idx % k, patch = (idx / k) % (gh * gw), frame = idx / (k * gh * gw);
    size_t b = frame / nt, t = frame % nt;
    size_t ch = e / (p * p), ky = (e / p) % p, kx = e % p;
    size_t py = patch / gw, px = patch % gw;
    out[idx] = video[(((b * 3 + ch) * nt + t) * h + py * p + ky) * w + px * p + kx];
}

// y (N, C) = x[:, 0, :] (the CLS token of each frame)
extern "C" __global__ void cls_select(size_t n, size_t l, size_t c, const float *x, float *y) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n * c) y[i] = x[(i / c) * l * c + i % c];
}

// gx[:, 0, :] += gy (N, C)
extern "C" __global__ void cls_select_bwd(size_t n, size_t l, size_t c, const float *gy, float *gx) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n * c) gx[(i / c) * l * c + i % c] += gy[i];
}

// y (N, L-1, C) = x[:, 1:, :] (the patch tokens)
extern "C" __global__ void patch_select(size_t n, size_t l, size_t c, const float *x, float *y) {
    size_t row = (l - 1) * c;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n * row) y[i] = x[(i / row) * l * c + c + i % row];
}

// gx[:, 1:, :] += gy (N, L-1, C)
extern "C" __global__ void patch_select_bwd(size_t n, size_t l, size_t c, const float *gy, float *gx) {
    size_t row = (l - 1) * c;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n * row) gx[(i / row) * l * c + c + i % row] += gy[i];
}

// y (N, L, C) = x, with delta (N, L-1, C) added to the patch tokens (the CLS token passes unchanged)
extern "C" __global__ void add_to_patches(size_t n, size_t l, size_t c, const float *x, const float *delta,
                                          float *y) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n * l * c) return;
    size_t r = i / (l * c), within = i % (l * c);
    y[i] = x[i] + (within >= c ? delta[r * (l - 1) * c + within - c] : 0.0f);
}

// y (N, L, C): [cls; patches] + pos (+ tem[r % frames] on the patch tokens, or on all tokens when
// tem_on_cls); tem may be null.
extern "C" __global__ void embed_tokens(size_t n, size_t l, size_t c, size_t frames, int tem_on_cls,
                                        const float *patches, const float *cls, const float *pos, const float *tem,
                                        float *y) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n * l * c) return;
    size_t r = i / (l * c), tok = (i / c) % l, ch = i % c;
    float v = tok == 0 ? cls[ch] : patches[(r * (l - 1) + tok - 1) * c + ch];
    v += pos[tok * c + ch];
    if (tem && (tok > 0 || tem_on_cls)) v += tem[(r % frames) * c + ch];
    y[i] = v;
}

// One thread per (token, channel): gpos[tok, ch] += sum_r gy[r, tok, ch]; gcls[ch] += the same for
// tok = 0. Either may be null.
extern "C" __global__ void embed_tokens_bwd_pos(size_t n, size_t l, size_t c, const float *gy, float *gcls,
                                                float *gpos) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= l * c) return;
    float acc = 0.0f;
    for (size_t r = 0; r < n; r++) acc += gy[r * l * c + i];
    if (gpos) gpos[i] += acc;
    if (gcls && i < c) gcls[i] += acc;
}

// One thread per (frame, channel): gtem[f, ch] += sum over rows r with r % frames = f and over the
// tokens the embedding was added to.
extern "C" __global__ void embed_tokens_bwd_tem(size_t n, size_t l, size_t c, size_t frames, int tem_on_cls,
                                                const float *gy, float *gtem) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= frames * c) return;
    size_t f = i / c, ch = i % c;
    float acc = 0.0f;
    for (size_t r = f; r < n; r += frames)
        for (size_t tok = tem_on_cls ? 0 : 1; tok < l; tok++) acc += gy[(r * l + tok) * c + ch];
    gtem[i] += acc;
}

// Temporal shift: channel ch of the first `tokens` tokens reads frame t + dt[ch] of the same video
// (zero outside the clip); dt[ch] = 0 channels and the other tokens pass unchanged.
extern "C" __global__ void temporal_shift(size_t n, size_t l, size_t c, size_t frames, size_t tokens, const int *dt,
                                          const float *x, float *y) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n * l * c) return;
    size_t r = i / (l * c), tok = (i / c) % l, ch = i % c;
    int d = dt[ch];
    if (tok >= tokens || d == 0) {
        y[i] = x[i];
        return;
    }
    long t = (long)(r % frames) + d;
    y[i] = (t >= 0 && t < (long)frames) ? x[((r + d) * l + tok) * c + ch] : 0.0f;
}

// gx[i] += the gradient of the output that read element i: the output of frame t - dt[ch] (when in
// the clip) for shifted channels of the first `tokens` tokens, gy[i] otherwise.
extern "C" __global__ void temporal_shift_bwd(size_t n, size_t l, size_t c, size_t frames, size_t tokens,
                                              const int *dt, const float *gy, float *gx) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n * l * c) return;
    size_t r = i / (l * c), tok = (i / c) % l, ch = i % c;
    int d = dt[ch];
    if (tok >= tokens || d == 0) {
        gx[i] += gy[i];
        return;
    }
    long t = (long)(r % frames) - d;
    if (t >= 0 && t < (long)frames) gx[i] += gy[((r - d) * l + tok) * c + ch];
}

// y = x with each frame's CLS token replaced by the mean of the CLS tokens of its video's frames.
extern "C" __global__ void average_cls(size_t n, size_t l, size_t c, size_t frames, const float *x, float *y) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n * l * c) return;
    size_t r = i / (l * c), tok = (i / c) % l, ch = i % c;
    if (tok != 0) {
        y[i] = x[i];
        return;
    }
    size_t b0 = r - r % frames;
    float acc = 0.0f;
    for (size_t q = b0; q < b0 + frames; q++) acc += x[q * l * c + ch];
    y[i] = acc / (float)frames;
}

// The backward of average_cls: the mean's gradient on CLS tokens, identity elsewhere.
extern "C" __global__ void average_cls_bwd(size_t n, size_t l, size_t c, size_t frames, const float *gy, float *gx) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n * l * c) return;
    size_t r = i / (l * c), tok = (i / c) % l, ch = i % c;
    if (tok != 0) {
        gx[i] += gy[i];
        return;
    }
    size_t b0 = r - r % frames;
    float acc = 0.0f;
    for (size_t q = b0; q < b0 + frames; q++) acc += gy[q * l * c + ch];
    gx[i] += acc / (float)frames;
}

// Prompt tokens: y (N, L2 = L - old + np, C) = [x CLS; prompts; x tokens after the old prompts].
extern "C" __global__ void set_prompts(size_t n, size_t l, size_t c, size_t old, size_t np, const float *x,
                                       const float *prompts, float *y) {
    size_t l2 = l - old + np;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n * l2 * c) return;
    size_t r = i / (l2 * c), tok = (i / c) % l2, ch = i % c;
    if (tok == 0) y[i] = x[r * l * c + ch];
    else if (tok <= np) y[i] = prompts[(tok - 1) * c + ch];
    else y[i] = x[(r * l + tok - np + old) * c + ch];
}

// The input gradient of set_prompts: gx gets the CLS and the kept tokens' gradients (not the old
// prompts'). One thread per element of gx.
extern "C" __global__ void set_prompts_bwd_x(size_t n, size_t l, size_t c, size_t old, size_t np, const float *gy,
                                             float *gx) {
    size_t l2 = l - old + np;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n * l * c) return;
    size_t r = i / (l * c), tok = (i / c) % l, ch = i % c;
    if (tok == 0) gx[i] += gy[r * l2 * c + ch];
    else if (tok > old) gx[i] += gy[(r * l2 + tok - old + np) * c + ch];
}

// gp[k, ch] += sum_r gy[r, 1 + k, ch] (one thread per prompt element)
extern "C" __global__ void set_prompts_bwd_p(size_t n, size_t l, size_t c, size_t old, size_t np, const float *gy,
                                             float *gp) {
    size_t l2 = l - old + np;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= np * c) return;
    float acc = 0.0f;
    for (size_t r = 0; r < n; r++) acc += gy[r * l2 * c + c + i];
    gp[i] += acc;
}
