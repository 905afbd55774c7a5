#pragma once
// Runs `body` on a pool task and fails the test (ending the process: a hung pool cannot be
// destroyed) if it does not finish within `limit`. For tests whose failure mode is a hang.

#include <gtest/gtest.h>

#include <chrono>   // for std::chrono::seconds
#include <cstdio>   // for std::fprintf
#include <cstdlib>  // for std::_Exit

#include "tidepool/pool.hpp"

namespace tidepool::testing {

template <class F>
auto run_or_fail_on_hang(pool& p, F body, std::chrono::seconds limit = std::chrono::seconds(120)) {
  auto t = p.submit(std::move(body));
  if (!t.wait_for(limit)) {
    std::fprintf(stderr, "FAILED: hung for %lld s\n", static_cast<long long>(limit.count()));
    std::_Exit(1);
  }
  return t.get();
}

}  // namespace tidepool::testing
