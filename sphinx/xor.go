package sphinx

import "crypto/subtle"

// subtleXOR sets dst[i] = a[i] ^ b[i] for i < len(dst).
func subtleXOR(dst, a, b []byte) { subtle.XORBytes(dst, a[:len(dst)], b[:len(dst)]) }
