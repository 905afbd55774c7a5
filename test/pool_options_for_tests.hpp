#pragma once
// Pool options the tests build again and again.

#include <cstddef>  // for std::size_t

#include "tidepool/pool.hpp"

namespace tidepool::testing {

inline pool_options with_workers(std::size_t n) {
  pool_options o;
  o.workers = n;
  return o;
}

}  // namespace tidepool::testing
