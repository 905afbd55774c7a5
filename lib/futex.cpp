#include "tidepool/detail/futex.hpp"

#include <cerrno>   // for errno, ETIMEDOUT
#include <climits>  // for INT_MAX

#if defined(__linux__)
#include <linux/futex.h>  // for FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE
#include <sys/syscall.h>  // for SYS_futex
#include <unistd.h>       // for syscall

#include <ctime>  // for timespec
#else
#include <thread>  // for std::this_thread::sleep_for
#endif

namespace tidepool::detail {

#if defined(__linux__)
namespace {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t), "futex word must be a plain 32-bit int");

long futex(const std::atomic<std::uint32_t>& word, int op, std::uint32_t value, const timespec* timeout) noexcept {
  // The kernel compares and sleeps atomically, so a wake between our check and the sleep is not
  // lost: the comparison fails and we return at once.
  return syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word), op, value, timeout, nullptr, 0);
}

}  // namespace

void futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
  futex(word, FUTEX_WAIT_PRIVATE, expected, nullptr);
}

bool futex_wait_for(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                    std::chrono::nanoseconds timeout) noexcept {
  if (timeout.count() <= 0) return false;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  const long r = futex(word, FUTEX_WAIT_PRIVATE, expected, &ts);
  return !(r == -1 && errno == ETIMEDOUT);
}

void futex_wake_one(const std::atomic<std::uint32_t>& word) noexcept { futex(word, FUTEX_WAKE_PRIVATE, 1, nullptr); }

void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept {
  futex(word, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr);
}

#else
// Portable fallback: short sleeps. Correct (callers loop), slower to react.
void futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
  if (word.load(std::memory_order_acquire) == expected) std::this_thread::sleep_for(std::chrono::microseconds(50));
}
bool futex_wait_for(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                    std::chrono::nanoseconds timeout) noexcept {
  if (word.load(std::memory_order_acquire) != expected) return true;
  std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(timeout, std::chrono::microseconds(50)));
  return word.load(std::memory_order_acquire) != expected;
}
void futex_wake_one(const std::atomic<std::uint32_t>&) noexcept {}
void futex_wake_all(const std::atomic<std::uint32_t>&) noexcept {}
#endif

}  // namespace tidepool::detail
