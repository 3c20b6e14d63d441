/* The grid barrier of the GEMV chains (k_gemv.cu), in a header of its own so that
 * bench/tools/sync_cost.cu times the same code against a CUDA-graph launch gap and PDL. */
#ifndef LOP_CUDA_GRID_BARRIER_CUH
#define LOP_CUDA_GRID_BARRIER_CUH

#define K_BAR_GROUPS 32
/* unsigned words a barrier needs, zeroed before first use (left with every count 0) */
#define K_CHAIN_BAR_WORDS (32 * (K_BAR_GROUPS + 2))

/* Every block of the grid waits here until all have arrived (the grid is resident: see k_gemv_chain).
 * bar[1] is the generation; the last to arrive resets the count(s) and moves the generation on.
 * Flat: every block arrives on bar[0]. Two-level (hier, LOP_CUDA_CHAIN=2 or 3): block b arrives on
 * the counter of group b % K_BAR_GROUPS (each on its own 128-byte line), the last of a group on the
 * top counter, so no counter takes more than ~gridDim.x / K_BAR_GROUPS serialised atomics (the flat
 * barrier's hundreds of arrivals on one address are a suspect of run8's loss). Writes before the
 * barrier are visible after it (fences around the atomics). */
__device__ __forceinline__ void grid_barrier(unsigned *bar, int hier) {
    __syncthreads();
    if (threadIdx.x == 0) {
        volatile unsigned *gen = bar + 1;
        const unsigned g = *gen;
        __threadfence();
        int last;
        if (!hier) {
            last = atomicAdd(bar, 1u) == gridDim.x - 1;
            if (last) atomicExch(bar, 0u);
        } else {
            const unsigned ng = gridDim.x < K_BAR_GROUPS ? gridDim.x : K_BAR_GROUPS, grp = blockIdx.x % ng;
            const unsigned in_grp = (gridDim.x - grp + ng - 1) / ng; /* blocks b < gridDim.x with b % ng == grp */
            unsigned *gc = bar + 32 * (1 + grp), *top = bar + 32 * (1 + K_BAR_GROUPS);
            last = 0;
            if (atomicAdd(gc, 1u) == in_grp - 1) {
                atomicExch(gc, 0u);
                __threadfence();
                last = atomicAdd(top, 1u) == ng - 1;
                if (last) atomicExch(top, 0u);
            }
        }
        if (last) {
            __threadfence();
            atomicAdd(bar + 1, 1u);
        } else {
            /* a block that never arrives (grid not resident) would hang the device: fail the launch */
            for (long long spins = 0; *gen == g; spins++) {
                __nanosleep(32);
                if (spins > (1ll << 26)) __trap();
            }
        }
        __threadfence();
    }
    __syncthreads();
}

#endif
