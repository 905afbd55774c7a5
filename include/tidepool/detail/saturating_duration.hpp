#pragma once
// Converting a caller's timeout to nanoseconds without overflow. std::chrono::duration_cast
// overflows (undefined behaviour; in practice a negative result) for anything longer than about
// 292 years, so wait_for(std::chrono::hours::max()) would time out at once. A timeout beyond
// nanoseconds::max() means "forever" and becomes nanoseconds::max(), which the waiting code
// already treats as forever; one below nanoseconds::min() becomes min(); a NaN means zero.

#include <chrono>  // for std::chrono::duration, std::chrono::nanoseconds, std::chrono::duration_cast

namespace tidepool::detail {

template <class Rep, class Period>
[[nodiscard]] constexpr std::chrono::nanoseconds saturating_nanoseconds(std::chrono::duration<Rep, Period> d) noexcept {
  using std::chrono::nanoseconds;
  // Compared in long double nanoseconds: every integer or floating count converts without
  // overflow, and 2^63 is exact there, so the bounds test is exact where it matters.
  const long double ns = std::chrono::duration<long double, std::nano>(d).count();
  if (ns != ns) return nanoseconds::zero();
  if (ns >= static_cast<long double>(nanoseconds::max().count())) return nanoseconds::max();
  if (ns <= static_cast<long double>(nanoseconds::min().count())) return nanoseconds::min();
  return std::chrono::duration_cast<nanoseconds>(d);
}

}  // namespace tidepool::detail
