#pragma once
// Cache-line geometry used to keep independently written atomics apart.

#include <cstddef>  // for std::size_t

namespace tidepool::detail {

// 64 bytes is the line size of every x86-64 and of most AArch64 cores. We do not use
// std::hardware_destructive_interference_size: g++ warns that its value may differ between
// translation units built with different -mtune, which is exactly what a header must not risk.
inline constexpr std::size_t cache_line_size = 64;

// Under ThreadSanitizer, standalone std::atomic_thread_fence is not modelled: a release fence
// followed by a relaxed store creates no happens-before edge in its eyes. Code that relies on
// fences strengthens the one store or load the fence was protecting when this is true.
#if defined(__SANITIZE_THREAD__)
inline constexpr bool thread_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool thread_sanitizer = true;
#else
inline constexpr bool thread_sanitizer = false;
#endif
#else
inline constexpr bool thread_sanitizer = false;
#endif

}  // namespace tidepool::detail
