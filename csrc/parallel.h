// The CPU kernels' one way to run in parallel: parallel_for over small tasks.
//
// parallel_for(n, threads, fn) runs fn(task, worker) for every task in [0, n) on up to
// `threads` workers (worker in [0, threads), unique among the tasks running at one time,
// for per-worker scratch). Tasks are claimed one at a time from an atomic counter, so a
// descheduled or slow worker holds back only the task it is on, never a fixed share of
// the work. The thread count is the caller's (torch.get_num_threads(), from Python).
//
// The workers are OpenMP's, and in a process that imported torch they are torch's own:
// torch's libgomp is loaded first under the same soname, so the two share one team of
// threads instead of competing for the cores. (A separate pool was tried: after every
// torch op, torch's workers spin for about 6 ms here, GOMP's default wait policy, and
// held a core against it, so selection after torch.mm ran slower on 2 threads than on 1.)
// How idle workers wait is that runtime's policy for torch and pyl2d alike;
// OMP_WAIT_POLICY=passive makes them sleep at once (worth it on a machine shared with
// other jobs).
//
// Nested calls, one thread, or a build without OpenMP run the tasks inline. The first
// exception a task throws is rethrown once the claimed tasks have finished; tasks not yet
// claimed are skipped.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>

#ifdef PYL2D_WITH_OPENMP
#include <omp.h>
#endif

namespace pyl2d {

inline void parallel_for(int64_t n, int threads, const std::function<void(int64_t, int)>& fn) {
  if (n <= 0) return;
  threads = static_cast<int>(std::clamp<int64_t>(std::min<int64_t>(threads, n), 1, 1024));
#ifdef PYL2D_WITH_OPENMP
  if (threads > 1 && !omp_in_parallel()) {
    std::atomic<int64_t> next{0};
    std::exception_ptr error;
    std::mutex error_lock;
#pragma omp parallel num_threads(threads)
    {
      const int worker = omp_get_thread_num();
      for (int64_t t; (t = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
        try {
          fn(t, worker);
        } catch (...) {
          std::lock_guard<std::mutex> g(error_lock);
          if (!error) error = std::current_exception();
          next.store(n, std::memory_order_relaxed);
        }
      }
    }
    if (error) std::rethrow_exception(error);
    return;
  }
#endif
  for (int64_t t = 0; t < n; ++t) fn(t, 0);
}

// parallel_for over [0, n) in ranges of `chunk` items: fn(begin, end, worker) per task.
inline void parallel_ranges(int64_t n, int64_t chunk, int threads,
                            const std::function<void(int64_t, int64_t, int)>& fn) {
  chunk = std::max<int64_t>(1, chunk);
  parallel_for((n + chunk - 1) / chunk, threads,
               [&](int64_t task, int worker) { fn(task * chunk, std::min(n, (task + 1) * chunk), worker); });
}

// The thread count a kernel runs with: the caller's request (torch.get_num_threads()), or
// the OpenMP default when none was given.
inline int resolve_threads(int64_t requested) {
  if (requested > 0) return static_cast<int>(std::min<int64_t>(requested, 1024));
#ifdef PYL2D_WITH_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace pyl2d
