/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the journal and the
 * snapshots: the one iSCSI, ext4 and SCTP use, with a hardware instruction on x86-64 (SSE4.2)
 * and a portable slicing-by-8 fallback that produces the same values.
 *
 * The interface chains like zlib's crc32(): start with 0 and pass the previous result to go on,
 * so crc32c(crc32c(0, a, n), b, m) is the CRC of a followed by b. crc32c(0, "123456789", 9) is
 * 0xE3069283. */
#ifndef QAEX_CRC32C_H
#define QAEX_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The CRC of data[0..len) continued from `crc`, with the fastest implementation available. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

/* The portable slicing-by-8 implementation (tests compare the two). */
uint32_t crc32c_sw(uint32_t crc, const void *data, size_t len);

/* The SSE4.2 implementation when this CPU has it, else the portable one. */
uint32_t crc32c_hw(uint32_t crc, const void *data, size_t len);

/* True when crc32c() uses the CPU instruction. */
bool crc32c_hw_available(void);

#endif
