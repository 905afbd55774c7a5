#pragma once
// Blocking on a 32-bit atomic word, with a timeout, and waking its waiters.
//
// Why not std::atomic::wait/notify: it has no timed wait (task::wait_for needs one), and
// libstdc++ skips the wake-up system call when it believes nobody waits, a belief it keeps in its
// own bookkeeping. Mixing it with any other waiting primitive on the same word could then lose a
// wake-up. So tidepool waits and wakes through these three functions only.
//
// All of them may return spuriously: callers re-check their condition in a loop.

#include <atomic>   // for std::atomic
#include <chrono>   // for std::chrono::nanoseconds
#include <cstdint>  // for std::uint32_t

namespace tidepool::detail {

// Blocks while `word == expected`.
void futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept;

// Blocks while `word == expected`, for at most `timeout`. Returns false if the time ran out.
bool futex_wait_for(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                    std::chrono::nanoseconds timeout) noexcept;

void futex_wake_one(const std::atomic<std::uint32_t>& word) noexcept;
void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept;

}  // namespace tidepool::detail
