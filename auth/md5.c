#include <config.h>

#include "auth/md5.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define MD5_HEX_LEN 32

static const char hex_digits[] = "0123456789abcdef";

bool md5_is_hash(const char *s)
{
	if (s == NULL || strncmp(s, "md5", 3) != 0)
		return false;
	for (size_t i = 0; i < MD5_HEX_LEN; i++) {
		char c = s[3 + i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false; /* also stops at the terminating NUL */
	}
	return s[MD5_PASSWD_LEN] == '\0';
}

/* out = "md5" + hex(md5(a || b)).  On failure (a crypto library refusing
 * MD5, out of memory) out is the empty string, which matches no response. */
static bool md5_hex(const void *a, size_t a_len, const void *b, size_t b_len,
                    char out[MD5_PASSWD_LEN + 1])
{
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len = 0;
	bool ok = false;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	out[0] = '\0';
	if (ctx == NULL)
		return false;
	if (EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1 || EVP_DigestUpdate(ctx, a, a_len) != 1 ||
	    EVP_DigestUpdate(ctx, b, b_len) != 1 ||
	    EVP_DigestFinal_ex(ctx, digest, &digest_len) != 1 || digest_len != 16)
		goto out;
	memcpy(out, "md5", 3);
	for (unsigned int i = 0; i < 16; i++) {
		out[3 + 2 * i] = hex_digits[digest[i] >> 4];
		out[3 + 2 * i + 1] = hex_digits[digest[i] & 0xf];
	}
	out[MD5_PASSWD_LEN] = '\0';
	ok = true;
out:
	OPENSSL_cleanse(digest, sizeof(digest));
	EVP_MD_CTX_free(ctx);
	return ok;
}

void md5_password_hash(const char *password, const char *user, char out[MD5_PASSWD_LEN + 1])
{
	md5_hex(password, strlen(password), user, strlen(user), out);
}

void md5_salted_response(const char *stored, const char *user, const uint8_t salt[4],
                         char out[MD5_PASSWD_LEN + 1])
{
	char hashed[MD5_PASSWD_LEN + 1];
	const char *hex;

	out[0] = '\0';
	if (md5_is_hash(stored)) {
		hex = stored + 3;
	} else {
		if (!md5_hex(stored, strlen(stored), user, strlen(user), hashed))
			goto out;
		hex = hashed + 3;
	}
	md5_hex(hex, MD5_HEX_LEN, salt, 4, out);
out:
	OPENSSL_cleanse(hashed, sizeof(hashed));
}

bool md5_check_response(const char *stored, const char *user, const uint8_t salt[4],
                        const char *resp, size_t resp_len)
{
	char expected[MD5_PASSWD_LEN + 1];
	bool ok;

	if (resp == NULL)
		return false;
	/* A PasswordMessage carries a terminating NUL: allow exactly one. */
	if (resp_len == MD5_PASSWD_LEN + 1 && resp[MD5_PASSWD_LEN] == '\0')
		resp_len = MD5_PASSWD_LEN;
	if (resp_len != MD5_PASSWD_LEN)
		return false;
	md5_salted_response(stored, user, salt, expected);
	ok = strlen(expected) == MD5_PASSWD_LEN &&
	        CRYPTO_memcmp(expected, resp, MD5_PASSWD_LEN) == 0;
	OPENSSL_cleanse(expected, sizeof(expected));
	return ok;
}
