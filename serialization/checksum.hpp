// CRC32C (Castagnoli), the checksum checkpoint files carry in their `.meta` sidecar.
//
//   uint32_t c = crc32c(data, size);            // crc32c("123456789", 9) == 0xE3069283
//   uint32_t d = crc32c(more, n, c);            // continues c over further bytes
//
// Table-driven (slicing-by-8, no instruction-set dependence): the same value on every machine.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flaxpp {

uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

}  // namespace flaxpp
