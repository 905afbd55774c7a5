#pragma once
// Counts how often the library reaches one hook point (lib/test_hooks.hpp; built only with
// -Dtest_hooks=true) while an instance lives: at most one at a time, since the library has one
// hook slot.

#include <atomic>   // for std::atomic
#include <cstddef>  // for std::size_t

#include "test_hooks.hpp"

namespace tidepool::testing {

template <detail::test_hooks::point Point>
struct counting_hook {
  static inline std::atomic<std::size_t> count{0};

  counting_hook() {
    count.store(0);
    detail::test_hooks::installed.store(&reached);
  }
  ~counting_hook() { detail::test_hooks::installed.store(nullptr); }
  counting_hook(const counting_hook&) = delete;
  counting_hook& operator=(const counting_hook&) = delete;

 private:
  static void reached(detail::test_hooks::point p) {
    if (p == Point) count.fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace tidepool::testing
