#pragma once
// How big the stress loops are. CI's sanitizer builds run them smaller (TSan slows atomics by
// 5-20x); a soak run scales them up: TIDEPOOL_STRESS_SCALE=50 ./build/test/test_segmented_queue

#include <cstddef>  // for std::size_t
#include <cstdlib>  // for std::getenv, std::strtod

namespace tidepool::testing {

inline double stress_scale() {
  if (const char* s = std::getenv("TIDEPOOL_STRESS_SCALE")) {
    const double v = std::strtod(s, nullptr);
    if (v > 0) return v;
  }
#if defined(TIDEPOOL_SANITIZED)
  return 0.1;
#else
  return 1.0;
#endif
}

// `n` scaled, and never below `floor` so that a scaled-down run still exercises contention.
inline std::size_t stress_count(std::size_t n, std::size_t floor = 1000) {
  const auto scaled = static_cast<std::size_t>(static_cast<double>(n) * stress_scale());
  return scaled < floor ? floor : scaled;
}

}  // namespace tidepool::testing
