#pragma once
// Which worker runs the calling code: for per-worker state (one slot per worker, no sharing)
// and for checking where a task landed.
//
//   std::vector<padded<long>> partial(pool.workers());
//   tidepool::parallel_for(pool, 0, n, [&](int i) { partial[*tidepool::this_worker_index()] += v[i]; });
//
// Worker indices run from 0 to the largest number of workers the pool ever had, minus one (a
// worker resize() retired and a later grow restarts keeps its index); they are the indices
// pool_options::cpus, on_worker_start and on_worker_stop use.

#include <cstddef>   // for std::size_t
#include <optional>  // for std::optional

namespace tidepool {

// The calling thread's index among its pool's workers; nullopt on a thread that is no worker of
// any pool (or in on_worker_stop, where the thread has already stopped being one).
[[nodiscard]] std::optional<std::size_t> this_worker_index() noexcept;

}  // namespace tidepool
