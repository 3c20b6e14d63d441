/* Kernels of the CUDA trainer; see k_train.cuh. Plain fp32 throughout, one thread block per row
 * (or per query / key of one head) so each kernel reads like the CPU loop it replaces; the matrix
 * products are cuBLAS sgemm calls in trainer_cuda.cu. Attention keeps a row of scores in shared
 * memory, so sequence length is bounded by it (about 50k positions), far above calibration use. */
#include <math.h>

#include "runtime/cuda/common.cuh"
#include "train/cuda/k_train.cuh"

#define ROW_THREADS 256
#define ATT_THREADS 128
#define ATT_MAX_SMEM (200 << 10)

/* ---- block reductions (blockDim a multiple of 32) ----------------------------------------- */
template <typename V> __device__ __forceinline__ V warp_add(V v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename V> __device__ V block_sum(V v) {
    __shared__ V sh[32];
    v = warp_add(v);
    __syncthreads(); /* a previous call may still be reading sh[0] */
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : (V)0;
        v = warp_add(v);
        if (threadIdx.x == 0) sh[0] = v;
    }
    __syncthreads();
    return sh[0];
}

__device__ float block_max(float v) {
    __shared__ float sh[32];
    v = warp_max(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : -INFINITY;
        v = warp_max(v);
        if (threadIdx.x == 0) sh[0] = v;
    }
    __syncthreads();
    return sh[0];
}

static int grid_for(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (int)(b > 4096 ? 4096 : b < 1 ? 1 : b);
}

/* ---- conversions, embedding --------------------------------------------------------------- */
template <typename T> __global__ void k_widen(float *d, const T *s, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        d[i] = elt<T>::to_f(s[i]);
}

void kt_widen(float *d, const void *s, lop_dtype dt, int64_t n) {
    if (dt == LOP_F32) {
        cudaMemcpyAsync(d, s, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, 0);
        return;
    }
    LOP_DISPATCH_T(dt, k_widen<T><<<grid_for(n, 256), 256>>>(d, (const T *)s, n));
}

__global__ void k_embed_bwd(float *dE, const float *dx, const int32_t *tok, int dim) {
    float *e = dE + (int64_t)tok[blockIdx.x] * dim;
    const float *g = dx + (int64_t)blockIdx.x * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) atomicAdd(e + i, g[i]);
}
void kt_embed_bwd(float *dE, const float *dx, const int32_t *tok, int n, int dim) {
    if (n > 0) k_embed_bwd<<<n, ROW_THREADS>>>(dE, dx, tok, dim);
}

/* ---- RMSNorm -------------------------------------------------------------------------------- */
__global__ void k_rmsnorm(float *y, const float *x, const float *w, int dim, float eps) {
    const float *xr = x + (int64_t)blockIdx.x * dim;
    float *yr = y + (int64_t)blockIdx.x * dim;
    float ss = 0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss);
    float inv = 1.0f / sqrtf(ss / dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = w[i] * (xr[i] * inv);
}
void kt_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps) {
    if (n > 0) k_rmsnorm<<<n, ROW_THREADS>>>(y, x, w, dim, eps);
}

__global__ void k_rmsnorm_bwd(float *dx, float *rinv, const float *x, const float *w, const float *dy, int dim,
                              float eps, int accumulate) {
    int64_t o = (int64_t)blockIdx.x * dim;
    const float *xr = x + o, *dyr = dy + o;
    float *dxr = dx + o;
    float ss = 0, dot = 0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        ss += xr[i] * xr[i];
        dot += w[i] * dyr[i] * xr[i];
    }
    ss = block_sum(ss);
    dot = block_sum(dot);
    float inv = 1.0f / sqrtf(ss / dim + eps), c = inv * inv * inv / dim * dot;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = inv * w[i] * dyr[i] - c * xr[i];
        dxr[i] = accumulate ? dxr[i] + v : v;
    }
    if (threadIdx.x == 0) rinv[blockIdx.x] = inv;
}
void kt_rmsnorm_bwd(float *dx, float *rinv, const float *x, const float *w, const float *dy, int n, int dim, float eps,
                    int accumulate) {
    if (n > 0) k_rmsnorm_bwd<<<n, ROW_THREADS>>>(dx, rinv, x, w, dy, dim, eps, accumulate);
}

/* column sums over rows (coalesced: neighbouring threads read neighbouring columns) */
__global__ void k_rmsnorm_dw(float *dw, const float *x, const float *dy, const float *rinv, int n, int dim) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    double s = 0;
    for (int r = 0; r < n; r++) s += (double)dy[(int64_t)r * dim + j] * x[(int64_t)r * dim + j] * rinv[r];
    dw[j] = (float)s;
}
void kt_rmsnorm_dw(float *dw, const float *x, const float *dy, const float *rinv, int n, int dim) {
    k_rmsnorm_dw<<<(dim + 255) / 256, 256>>>(dw, x, dy, rinv, n, dim);
}

/* ---- bias, residual ------------------------------------------------------------------------- */
__global__ void k_add_bias(float *Y, const float *b, int64_t total, int out) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        Y[i] += b[i % out];
}
void kt_add_bias(float *Y, const float *b, int n, int out) {
    int64_t t = (int64_t)n * out;
    if (t > 0) k_add_bias<<<grid_for(t, 256), 256>>>(Y, b, t, out);
}

__global__ void k_bias_bwd(float *db, const float *dY, int n, int out) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= out) return;
    double s = 0;
    for (int r = 0; r < n; r++) s += dY[(int64_t)r * out + j];
    db[j] = (float)s;
}
void kt_bias_bwd(float *db, const float *dY, int n, int out) { k_bias_bwd<<<(out + 255) / 256, 256>>>(db, dY, n, out); }

__global__ void k_add(float *x, const float *y, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}
void kt_add(float *x, const float *y, int64_t n) {
    if (n > 0) k_add<<<grid_for(n, 256), 256>>>(x, y, n);
}

/* ---- RoPE ----------------------------------------------------------------------------------- */
__global__ void k_rope(float *x, int nh, int hd, int seq_len, const float *inv_freq, int sign) {
    int half = hd / 2, pos = (int)(blockIdx.x % seq_len) * sign;
    float *xr = x + (int64_t)blockIdx.x * nh * hd;
    for (int t = threadIdx.x; t < nh * half; t += blockDim.x) {
        int h = t / half, i = t % half;
        float a = (float)pos * inv_freq[i], c = cosf(a), s = sinf(a);
        float *v = xr + (int64_t)h * hd;
        float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * c - x1 * s;
        v[i + half] = x1 * c + x0 * s;
    }
}
void kt_rope(float *x, int n_heads, int hd, int n, int seq_len, const float *inv_freq, int sign) {
    if (n > 0 && n_heads > 0) k_rope<<<n, 128>>>(x, n_heads, hd, seq_len, inv_freq, sign);
}

/* ---- attention ------------------------------------------------------------------------------ */
/* out[u] = scale * (row . R[u]) for u = 0..last, one warp per u; row (hd floats) is staged in rs
 * (shared). Ends with the block synchronised. */
__device__ void row_dots(float *out, float *rs, const float *row, const float *R, int last, int ld, int hd, float scale) {
    for (int i = threadIdx.x; i < hd; i += blockDim.x) rs[i] = row[i];
    __syncthreads();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int u = warp; u <= last; u += nw) {
        const float *r = R + (int64_t)u * ld;
        float d = 0;
        for (int i = lane; i < hd; i += 32) d += rs[i] * r[i];
        d = warp_sum(d);
        if (lane == 0) out[u] = d * scale;
    }
    __syncthreads();
}

/* out[i] = sum over u = 0..last of w[u] * R[u][i], i < hd (the probability- or gradient-weighted sum
 * of V or K rows that ends the attention forward and the dQ of its backward); every thread */
__device__ void weighted_rows(float *out, const float *w, const float *R, int last, int ld, int hd) {
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float o = 0;
        for (int u = 0; u <= last; u++) o += w[u] * R[(int64_t)u * ld + i];
        out[i] = o;
    }
}

/* One block per (query row qi, head h, sequence): scores of keys 0..qi (one warp per key), softmax,
 * then the weighted sum of V rows (one thread per output element). */
__global__ void k_attn_fwd(float *att, float *P, const float *q, const float *k, const float *v, int T, int nh,
                           int nkv, int hd, float scale) {
    extern __shared__ float sm[];
    float *qs = sm, *sc = sm + hd;
    int qi = blockIdx.x, h = blockIdx.y, seq = blockIdx.z;
    int qd = nh * hd, kvd = nkv * hd, kh = h / (nh / nkv);
    int64_t r0 = (int64_t)seq * T;
    const float *K = k + r0 * kvd + (int64_t)kh * hd, *V = v + r0 * kvd + (int64_t)kh * hd;
    row_dots(sc, qs, q + (r0 + qi) * qd + (int64_t)h * hd, K, qi, kvd, hd, scale);
    float mx = -INFINITY;
    for (int u = threadIdx.x; u <= qi; u += blockDim.x) mx = fmaxf(mx, sc[u]);
    mx = block_max(mx);
    float s = 0;
    for (int u = threadIdx.x; u <= qi; u += blockDim.x) {
        float e = expf(sc[u] - mx);
        sc[u] = e;
        s += e;
    }
    s = block_sum(s);
    float inv = 1.0f / s;
    float *Prow = P ? P + (((int64_t)seq * nh + h) * T + qi) * T : NULL;
    for (int u = threadIdx.x; u <= qi; u += blockDim.x) {
        sc[u] *= inv;
        if (Prow) Prow[u] = sc[u];
    }
    __syncthreads();
    weighted_rows(att + (r0 + qi) * qd + (int64_t)h * hd, sc, V, qi, kvd, hd);
}

static int att_smem(int T, int hd, size_t *bytes) {
    *bytes = (size_t)(T + hd) * sizeof(float);
    return *bytes <= ATT_MAX_SMEM ? 0 : -1;
}

int kt_attn_fwd(float *att, float *P, const float *q, const float *k, const float *v, int n_seq, int T, int nh, int nkv,
                int hd) {
    size_t smem;
    if (att_smem(T, hd, &smem)) return -1;
    static int attr_set;
    if (!attr_set) {
        cudaFuncSetAttribute(k_attn_fwd, cudaFuncAttributeMaxDynamicSharedMemorySize, ATT_MAX_SMEM);
        attr_set = 1;
    }
    dim3 grid(T, nh, n_seq);
    k_attn_fwd<<<grid, ATT_THREADS, smem>>>(att, P, q, k, v, T, nh, nkv, hd, 1.0f / sqrtf((float)hd));
    return 0;
}

/* dP = dO v^T (one warp per key), dS = P (dP - sum(P dP)) * scale stored in DS, dq = dS k */
__global__ void k_attn_bwd_q(float *dq, float *DS, const float *P, const float *dO, const float *k, const float *v,
                             int T, int nh, int nkv, int hd, float scale) {
    extern __shared__ float sm[];
    float *dos = sm, *ds = sm + hd;
    int qi = blockIdx.x, h = blockIdx.y, seq = blockIdx.z;
    int qd = nh * hd, kvd = nkv * hd, kh = h / (nh / nkv);
    int64_t r0 = (int64_t)seq * T, prow = (((int64_t)seq * nh + h) * T + qi) * T;
    const float *K = k + r0 * kvd + (int64_t)kh * hd, *V = v + r0 * kvd + (int64_t)kh * hd;
    row_dots(ds, dos, dO + (r0 + qi) * qd + (int64_t)h * hd, V, qi, kvd, hd, 1.0f);
    const float *Prow = P + prow;
    float pdp = 0;
    for (int u = threadIdx.x; u <= qi; u += blockDim.x) pdp += Prow[u] * ds[u];
    pdp = block_sum(pdp);
    for (int u = threadIdx.x; u <= qi; u += blockDim.x) {
        float x = Prow[u] * (ds[u] - pdp) * scale;
        ds[u] = x;
        DS[prow + u] = x;
    }
    __syncthreads();
    weighted_rows(dq + (r0 + qi) * qd + (int64_t)h * hd, ds, K, qi, kvd, hd);
}

/* One block per (key row u, KV head, sequence): dk = sum over the group's heads and the queries
 * qi >= u of dS[qi][u] q[qi], dv likewise with P and dO. No atomics: each block owns its rows. */
__global__ void k_attn_bwd_kv(float *dk, float *dv, const float *DS, const float *P, const float *q, const float *dO,
                              int T, int nh, int nkv, int hd) {
    int u = blockIdx.x, kh = blockIdx.y, seq = blockIdx.z, group = nh / nkv;
    int qd = nh * hd, kvd = nkv * hd;
    int64_t r0 = (int64_t)seq * T;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float a = 0, b = 0;
        for (int g = 0; g < group; g++) {
            int h = kh * group + g;
            int64_t c0 = ((int64_t)seq * nh + h) * T * T + u;
            const float *qc = q + r0 * qd + (int64_t)h * hd + i, *oc = dO + r0 * qd + (int64_t)h * hd + i;
            for (int qi = u; qi < T; qi++) {
                a += DS[c0 + (int64_t)qi * T] * qc[(int64_t)qi * qd];
                b += P[c0 + (int64_t)qi * T] * oc[(int64_t)qi * qd];
            }
        }
        dk[(r0 + u) * kvd + (int64_t)kh * hd + i] = a;
        dv[(r0 + u) * kvd + (int64_t)kh * hd + i] = b;
    }
}

int kt_attn_bwd(float *dq, float *dk, float *dv, float *DS, const float *P, const float *datt, const float *q,
                const float *k, const float *v, int n_seq, int T, int nh, int nkv, int hd) {
    size_t smem;
    if (att_smem(T, hd, &smem)) return -1;
    static int attr_set;
    if (!attr_set) {
        cudaFuncSetAttribute(k_attn_bwd_q, cudaFuncAttributeMaxDynamicSharedMemorySize, ATT_MAX_SMEM);
        attr_set = 1;
    }
    k_attn_bwd_q<<<dim3(T, nh, n_seq), ATT_THREADS, smem>>>(dq, DS, P, datt, k, v, T, nh, nkv, hd,
                                                            1.0f / sqrtf((float)hd));
    k_attn_bwd_kv<<<dim3(T, nkv, n_seq), ATT_THREADS>>>(dk, dv, DS, P, q, datt, T, nh, nkv, hd);
    return 0;
}

/* ---- SwiGLU --------------------------------------------------------------------------------- */
__global__ void k_swiglu(float *h, const float *g, const float *u, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
void kt_swiglu(float *h, const float *g, const float *u, int64_t n) {
    if (n > 0) k_swiglu<<<grid_for(n, 256), 256>>>(h, g, u, n);
}

__global__ void k_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float s = 1.0f / (1.0f + expf(-g[i])), d = dh[i];
        du[i] = d * g[i] * s;
        dg[i] = d * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}
void kt_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n) {
    if (n > 0) k_swiglu_bwd<<<grid_for(n, 256), 256>>>(dg, du, dh, g, u, n);
}

/* ---- head ----------------------------------------------------------------------------------- */
__global__ void k_gather(float *xc, const float *x, const int32_t *rows, int dim) {
    const float *s = x + (int64_t)rows[blockIdx.x] * dim;
    float *d = xc + (int64_t)blockIdx.x * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) d[i] = s[i];
}
void kt_gather(float *xc, const float *x, const int32_t *rows, int nc, int dim) {
    if (nc > 0) k_gather<<<nc, ROW_THREADS>>>(xc, x, rows, dim);
}

__global__ void k_scatter(float *x, const float *xc, const int32_t *rows, int dim) {
    float *d = x + (int64_t)rows[blockIdx.x] * dim;
    const float *s = xc + (int64_t)blockIdx.x * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) d[i] = s[i];
}
void kt_scatter(float *x, const float *xc, const int32_t *rows, int nc, int dim) {
    if (nc > 0) k_scatter<<<nc, ROW_THREADS>>>(x, xc, rows, dim);
}

__global__ void k_xent(float *logits, const int32_t *target, int V, double weight, double *nll, int grad) {
    float *row = logits + (int64_t)blockIdx.x * V;
    float mx = -INFINITY;
    for (int k = threadIdx.x; k < V; k += blockDim.x) mx = fmaxf(mx, row[k]);
    mx = block_max(mx);
    double z = 0;
    for (int k = threadIdx.x; k < V; k += blockDim.x) z += exp((double)row[k] - mx);
    z = block_sum(z);
    double lse = mx + log(z);
    int t = target[blockIdx.x];
    float lt = row[t];
    __syncthreads(); /* every thread has read row[t] before the row is overwritten */
    if (threadIdx.x == 0) nll[blockIdx.x] = lse - lt;
    if (!grad) return;
    for (int k = threadIdx.x; k < V; k += blockDim.x) row[k] = (float)(weight * exp((double)row[k] - lse));
    __syncthreads();
    if (threadIdx.x == 0) row[t] -= (float)weight;
}
void kt_xent(float *logits, const int32_t *target, int nc, int V, double weight, double *nll, int grad) {
    if (nc > 0) k_xent<<<nc, 1024>>>(logits, target, V, weight, nll, grad);
}

__global__ void k_dot_acc(double *acc, const float *w, const float *g, int64_t n) {
    double s = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        s += (double)w[i] * g[i];
    s = block_sum(s);
    if (threadIdx.x == 0) atomicAdd(acc, s);
}
void kt_dot_acc(double *acc, const float *w, const float *g, int64_t n) {
    if (n > 0) k_dot_acc<<<grid_for(n, 256) < 1024 ? grid_for(n, 256) : 1024, 256>>>(acc, w, g, n);
}
