/* The backend's calls into the device timeline (timeline.cu), present in `make TIMELINE=1` builds
 * only; elsewhere they are empty macros, so the decode loop carries no cost and no #ifdef. */
#ifndef LOP_RUNTIME_CUDA_TIMELINE_HOST_H
#define LOP_RUNTIME_CUDA_TIMELINE_HOST_H
#include <cuda_runtime.h>

#ifdef LOP_TIMELINE
/* reads LOP_TIMELINE / LOP_TIMELINE_STEP, allocates the log; 1 when logging */
int lop_tl_init(void);
/* before (on = 1) and after (on = 0) decode step k of N is enqueued on s */
void lop_tl_arm(cudaStream_t s, int k, int N, int on);
/* after the generation: writes the logged step (once per process) */
void lop_tl_write(cudaStream_t s);
#else
#define lop_tl_init() ((void)0)
#define lop_tl_arm(s, k, N, on) ((void)0)
#define lop_tl_write(s) ((void)0)
#endif
#endif
