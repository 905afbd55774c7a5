#pragma once
// A hint to the core that we are spinning: lets a hyper-threaded sibling run, and on x86 avoids
// the memory-order mis-speculation penalty when the awaited store arrives.

namespace tidepool::detail {

inline void cpu_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace tidepool::detail
