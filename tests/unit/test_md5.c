/* PostgreSQL's md5 scheme.  Expected values were computed independently with
 * Python's hashlib. */
#include <config.h>

#include "auth/md5.h"
#include "tests/lib/tap.h"

#include <string.h>

struct vector {
	const char *user, *password;
	uint8_t salt[4];
	const char *hash, *response;
};

static const struct vector vectors[] = {
        {"postgres",
         "password",
         {1, 2, 3, 4},
         "md532e12f215ba27cb750c9e093ce4b5127",
         "md598511ceaec347a656f032c7f2a16ef17"},
        {"alice",
         "s3cr3t",
         {0xff, 0x00, 0x7f, 0x80},
         "md58505fe3f3de8521be02f7b633dae545d",
         "md57d778444f4f879b11a96c38b4a9e062d"},
        /* UTF-8 bytes are hashed as they are */
        {"postgres",
         "p\xc3\xa4ssword",
         {0xde, 0xad, 0xbe, 0xef},
         "md5dcc7d333f83d3c2af1fd7c48866cb99c",
         "md54f40aa594a63b7c4fe775abc872357c8"},
};

static void test_is_hash(void)
{
	ok(md5_is_hash("md532e12f215ba27cb750c9e093ce4b5127"), "is_hash: a real hash");
	ok(!md5_is_hash("md532E12F215BA27CB750C9E093CE4B5127"), "is_hash: uppercase hex refused");
	ok(!md5_is_hash("md532e12f215ba27cb750c9e093ce4b512"), "is_hash: 31 digits refused");
	ok(!md5_is_hash("md532e12f215ba27cb750c9e093ce4b51277"), "is_hash: 33 digits refused");
	ok(!md5_is_hash("md532e12f215ba27cb750c9e093ce4b512g"), "is_hash: non-hex refused");
	ok(!md5_is_hash("MD532e12f215ba27cb750c9e093ce4b5127"), "is_hash: prefix is lowercase");
	ok(!md5_is_hash("password"), "is_hash: plain password");
	ok(!md5_is_hash("md5"), "is_hash: bare prefix");
	ok(!md5_is_hash(""), "is_hash: empty string");
	ok(!md5_is_hash(NULL), "is_hash: NULL");
}

static void test_vectors(void)
{
	char out[MD5_PASSWD_LEN + 1];

	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const struct vector *v = &vectors[i];

		md5_password_hash(v->password, v->user, out);
		is_str(out, v->hash, "hash of %s's password", v->user);
		md5_salted_response(v->password, v->user, v->salt, out);
		is_str(out, v->response, "salted response from the plain password (%s)", v->user);
		md5_salted_response(v->hash, v->user, v->salt, out);
		is_str(out, v->response, "salted response from the stored hash (%s)", v->user);

		ok(md5_check_response(v->password, v->user, v->salt, v->response, MD5_PASSWD_LEN),
		   "check: right response, plain stored secret (%s)", v->user);
		ok(md5_check_response(v->hash, v->user, v->salt, v->response, MD5_PASSWD_LEN),
		   "check: right response, hashed stored secret (%s)", v->user);
	}
}

static void test_check(void)
{
	const struct vector *v = &vectors[0];
	char resp[64];
	uint8_t other_salt[4] = {1, 2, 3, 5};

	/* With the PasswordMessage's NUL counted. */
	ok(md5_check_response(v->hash, v->user, v->salt, v->response, MD5_PASSWD_LEN + 1),
	   "check: one trailing NUL is allowed");
	memcpy(resp, v->response, MD5_PASSWD_LEN);
	resp[MD5_PASSWD_LEN] = '\0';
	resp[MD5_PASSWD_LEN + 1] = '\0';
	ok(!md5_check_response(v->hash, v->user, v->salt, resp, MD5_PASSWD_LEN + 2),
	   "check: two trailing NULs refused");
	resp[MD5_PASSWD_LEN] = 'x';
	ok(!md5_check_response(v->hash, v->user, v->salt, resp, MD5_PASSWD_LEN + 1),
	   "check: trailing garbage refused");

	/* Not NUL-terminated: only resp_len bytes are looked at. */
	memcpy(resp, v->response, MD5_PASSWD_LEN);
	memset(resp + MD5_PASSWD_LEN, 'z', 8);
	ok(md5_check_response(v->hash, v->user, v->salt, resp, MD5_PASSWD_LEN),
	   "check: response without NUL");

	ok(!md5_check_response(v->hash, v->user, other_salt, v->response, MD5_PASSWD_LEN),
	   "check: other salt refused");
	ok(!md5_check_response(v->password, "postgres2", v->salt, v->response, MD5_PASSWD_LEN),
	   "check: plain secret hashed with another user name refused");
	ok(!md5_check_response("passwore", v->user, v->salt, v->response, MD5_PASSWD_LEN),
	   "check: wrong plain password refused");
	ok(!md5_check_response(vectors[1].hash, v->user, v->salt, v->response, MD5_PASSWD_LEN),
	   "check: other stored hash refused");

	memcpy(resp, v->response, MD5_PASSWD_LEN + 1);
	resp[10] ^= 1;
	ok(!md5_check_response(v->hash, v->user, v->salt, resp, MD5_PASSWD_LEN),
	   "check: one flipped bit refused");
	for (size_t i = 0; i < MD5_PASSWD_LEN; i++)
		resp[i] = (char)(resp[i] >= 'a' && resp[i] <= 'f' ? resp[i] - 32 : resp[i]);
	ok(!md5_check_response(v->hash, v->user, v->salt, resp, MD5_PASSWD_LEN),
	   "check: uppercase response refused");

	ok(!md5_check_response(v->hash, v->user, v->salt, v->response, MD5_PASSWD_LEN - 1),
	   "check: truncated response refused");
	ok(!md5_check_response(v->hash, v->user, v->salt, "", 0), "check: empty response refused");
	ok(!md5_check_response(v->hash, v->user, v->salt, NULL, 0), "check: NULL response refused");
	/* A client replaying the stored hash itself must not get in. */
	ok(!md5_check_response(v->hash, v->user, v->salt, v->hash, MD5_PASSWD_LEN),
	   "check: the stored hash is not a response");
}

int main(void)
{
	test_is_hash();
	test_vectors();
	test_check();
	return tap_done();
}
