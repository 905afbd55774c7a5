#pragma once
// The process-wide pool, and pond's package-level functions on it.
//
//   auto t = tidepool::submit([] { return work(); });   // on tidepool::default_pool()
//   tidepool::go([] { log("fire and forget"); });
//
// default_pool() is created on first use, with std::thread::hardware_concurrency() workers and
// the default options. It is never destroyed: it stays usable from static destructors and from
// threads that outlive main, and no destructor can deadlock on it at exit. The price: tasks still
// running or queued when the process exits are abandoned. Call
// tidepool::default_pool().stop_and_wait() before returning from main to finish them.

#include <utility>  // for std::forward

#include "tidepool/pool.hpp"

namespace tidepool {

[[nodiscard]] pool& default_pool();

template <class F>
[[nodiscard]] auto submit(F&& f) {
  return default_pool().submit(std::forward<F>(f));
}

template <class F>
void go(F&& f) {
  default_pool().go(std::forward<F>(f));
}

}  // namespace tidepool
