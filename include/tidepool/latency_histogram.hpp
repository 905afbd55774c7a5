#pragma once
// A histogram of durations with power-of-two buckets, as found in pool_metrics: how long tasks
// waited in the queue (submit → start) and how long they ran (start → end).
//
//   const tidepool::pool_metrics m = pool.metrics();
//   std::uint64_t p99 = m.queue_wait.percentile_ns(0.99);
//
// Bucket i counts durations in (upper_bound_ns(i - 1), upper_bound_ns(i)], from ≤ 128 ns up to
// ≤ 2^37 ns (137 s); the last bucket has no upper bound. Percentiles are estimated by linear
// interpolation inside their bucket, so they are exact to within a factor of two — and never
// above `max_ns`, which is exact.

#include <algorithm>  // for std::min
#include <array>      // for std::array
#include <bit>        // for std::bit_width
#include <cmath>      // for std::ceil
#include <cstddef>    // for std::size_t
#include <cstdint>    // for std::uint64_t, UINT64_MAX

namespace tidepool {

struct latency_histogram {
  static constexpr std::size_t bucket_count = 32;
  static constexpr unsigned first_bound_log2 = 7;  // the first bucket holds durations ≤ 128 ns

  std::array<std::uint64_t, bucket_count> buckets{};  // per bucket, not cumulative
  std::uint64_t count = 0;                            // the sum of `buckets`
  std::uint64_t sum_ns = 0;
  std::uint64_t max_ns = 0;

  // The inclusive upper bound of bucket i; UINT64_MAX for the last one (Prometheus' +Inf).
  [[nodiscard]] static constexpr std::uint64_t upper_bound_ns(std::size_t i) noexcept {
    return i + 1 == bucket_count ? UINT64_MAX : std::uint64_t{1} << (i + first_bound_log2);
  }

  [[nodiscard]] static constexpr std::size_t bucket_of(std::uint64_t ns) noexcept {
    if (ns <= (std::uint64_t{1} << first_bound_log2)) return 0;
    const auto i = static_cast<std::size_t>(std::bit_width(ns - 1)) - first_bound_log2;
    return std::min(i, bucket_count - 1);
  }

  // The q-quantile (0 < q ≤ 1) in nanoseconds; 0 for an empty histogram.
  [[nodiscard]] std::uint64_t percentile_ns(double q) const noexcept {
    if (count == 0) return 0;
    const double rank = std::max(1.0, std::ceil(q * static_cast<double>(count)));
    std::uint64_t below = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      if (buckets[i] == 0 || static_cast<double>(below + buckets[i]) < rank) {
        below += buckets[i];
        continue;
      }
      if (i + 1 == bucket_count) return max_ns;
      const double lower = i == 0 ? 0.0 : static_cast<double>(upper_bound_ns(i - 1));
      const double upper = static_cast<double>(upper_bound_ns(i));
      const double fraction = (rank - static_cast<double>(below)) / static_cast<double>(buckets[i]);
      return std::min(max_ns, static_cast<std::uint64_t>(lower + fraction * (upper - lower)));
    }
    return max_ns;
  }
  [[nodiscard]] std::uint64_t p50_ns() const noexcept { return percentile_ns(0.50); }
  [[nodiscard]] std::uint64_t p90_ns() const noexcept { return percentile_ns(0.90); }
  [[nodiscard]] std::uint64_t p99_ns() const noexcept { return percentile_ns(0.99); }

  void record(std::uint64_t ns) noexcept {
    ++buckets[bucket_of(ns)];
    ++count;
    sum_ns += ns;
    max_ns = std::max(max_ns, ns);
  }

  latency_histogram& operator+=(const latency_histogram& other) noexcept {
    for (std::size_t i = 0; i < bucket_count; ++i) buckets[i] += other.buckets[i];
    count += other.count;
    sum_ns += other.sum_ns;
    max_ns = std::max(max_ns, other.max_ns);
    return *this;
  }
};

}  // namespace tidepool
