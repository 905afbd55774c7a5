#include "tidepool/default_pool.hpp"

namespace tidepool {

pool& default_pool() {
  // Deliberately leaked (see default_pool.hpp). Function-local: created, thread-safely, on first
  // use, so using it from another static initializer is safe too.
  static pool* const instance = new pool();
  return *instance;
}

}  // namespace tidepool
