#pragma once
// Task priority: among tasks waiting to start, a higher level starts first.

#include <cstdint>  // for std::uint8_t

namespace tidepool {

enum class priority : std::uint8_t { low = 0, normal = 1, high = 2 };
inline constexpr std::uint8_t priority_levels = 3;

}  // namespace tidepool
