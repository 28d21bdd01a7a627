/* Address parsing: the forms an operator types on the command line. */
#include "net/net.h"

#include <hmig/hmig.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#define FORMS "expected HOST:PORT, [IPV6]:PORT, tcp:HOST:PORT, unix:/path or unix:@name"

static int parse_port(const char *s, const char *whole, uint16_t *port, char *err)
{
	unsigned long v = 0;
	size_t n = strlen(s);

	/* Five digits: anything longer is out of range or has leading zeros
	 * nobody meant. */
	if (n == 0 || n > 5)
		return err_setf(err, -EINVAL, "bad address '%s': port '%s' is not a number 0-65535 (%s)",
				whole, s, FORMS);
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return err_setf(err, -EINVAL, "bad address '%s': port '%s' is not a number 0-65535 (%s)",
					whole, s, FORMS);
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return err_setf(err, -EINVAL, "bad address '%s': port %lu is above 65535", whole, v);
	*port = (uint16_t)v;
	return 0;
}

static void format_inet(struct net_addr *a)
{
	/* A numeric IPv6 address with a %scope: INET6_ADDRSTRLEN + IF_NAMESIZE. */
	char host[64];
	uint16_t port;

	if (getnameinfo((struct sockaddr *)&a->ss, a->len, host, sizeof(host), NULL, 0,
			NI_NUMERICHOST) != 0)
		snprintf(host, sizeof(host), "?");
	if (a->ss.ss_family == AF_INET6) {
		port = ntohs(((struct sockaddr_in6 *)&a->ss)->sin6_port);
		snprintf(a->text, sizeof(a->text), "[%s]:%u", host, port);
	} else {
		port = ntohs(((struct sockaddr_in *)&a->ss)->sin_port);
		snprintf(a->text, sizeof(a->text), "%s:%u", host, port);
	}
}

static int parse_unix(struct net_addr *a, const char *path, const char *whole, char *err)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&a->ss;
	size_t n = strlen(path);
	bool abstract = path[0] == '@';

	if (n == 0 || (abstract && n == 1))
		return err_setf(err, -EINVAL, "bad address '%s': empty socket %s (%s)", whole,
				abstract ? "name" : "path", FORMS);
	/* sun_path holds 108 bytes: a path needs its NUL, an abstract name
	 * needs its leading NUL instead of the '@'. */
	if (n >= sizeof(sun->sun_path))
		return err_setf(err, -EINVAL, "bad address '%s': socket path longer than %zu bytes (use a shorter path)",
				whole, sizeof(sun->sun_path) - 1);
	sun->sun_family = AF_UNIX;
	if (abstract) {
		sun->sun_path[0] = '\0';
		memcpy(sun->sun_path + 1, path + 1, n - 1);
		a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		memcpy(sun->sun_path, path, n + 1);
		a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	snprintf(a->text, sizeof(a->text), "unix:%s", path);
	return 0;
}

static int resolve(struct net_addr *a, const char *host, int family, uint16_t port,
		   const char *whole, char *err)
{
	struct addrinfo hints = { .ai_family = family, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int rc;

	if (family == AF_INET6)
		hints.ai_flags = AI_NUMERICHOST;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0 || !res) {
		if (family == AF_INET6)
			return err_setf(err, -EINVAL, "bad address '%s': '%s' is not an IPv6 address",
					whole, host);
		return err_setf(err, -EADDRNOTAVAIL, "cannot resolve host '%s' in address '%s': %s (check the name, or give an IP address)",
				host, whole, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
	}
	/* The first answer: getaddrinfo already sorts by RFC 6724 preference. */
	memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
	a->len = res->ai_addrlen;
	freeaddrinfo(res);
	if (a->ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
	format_inet(a);
	return 0;
}

void net_addr_set(struct net_addr *a, const struct sockaddr_storage *ss, socklen_t len)
{
	const struct sockaddr_un *sun = (const struct sockaddr_un *)ss;
	size_t off = offsetof(struct sockaddr_un, sun_path);

	memset(a, 0, sizeof(*a));
	if (len > sizeof(a->ss))
		len = sizeof(a->ss);
	memcpy(&a->ss, ss, len);
	a->len = len;
	if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6) {
		format_inet(a);
	} else if (ss->ss_family == AF_UNIX && len > off + 1 && sun->sun_path[0] == '\0') {
		snprintf(a->text, sizeof(a->text), "unix:@%.*s", (int)(len - off - 1),
			 sun->sun_path + 1);
	} else if (ss->ss_family == AF_UNIX && len > off) {
		snprintf(a->text, sizeof(a->text), "unix:%.*s", (int)(len - off), sun->sun_path);
	} else {
		/* A connecting unix socket is usually unbound: no name to show. */
		snprintf(a->text, sizeof(a->text), "unix:(unnamed)");
	}
}

int net_addr_parse(struct net_addr *a, const char *s, char *err)
{
	char buf[NET_ADDR_TEXT + 8];
	const char *rest = s;
	char *host, *colon;
	uint16_t port;
	int rc;

	memset(a, 0, sizeof(*a));
	if (!s || !*s)
		return err_setf(err, -EINVAL, "empty address (%s)", FORMS);
	if (!strncmp(s, "unix:", 5))
		return parse_unix(a, s + 5, s, err);
	if (!strncmp(s, "tcp:", 4))
		rest = s + 4;
	if (strlen(rest) >= sizeof(buf))
		return err_setf(err, -EINVAL, "bad address '%.60s...': too long", s);
	strcpy(buf, rest);

	if (buf[0] == '[') {
		char *close = strchr(buf, ']');

		if (!close || close == buf + 1)
			return err_setf(err, -EINVAL, "bad address '%s': unterminated or empty [IPv6] (%s)",
					s, FORMS);
		if (close[1] != ':')
			return err_setf(err, -EINVAL, "bad address '%s': missing :PORT after ']' (%s)",
					s, FORMS);
		*close = '\0';
		rc = parse_port(close + 2, s, &port, err);
		if (rc < 0)
			return rc;
		return resolve(a, buf + 1, AF_INET6, port, s, err);
	}

	colon = strrchr(buf, ':');
	if (!colon)
		return err_setf(err, -EINVAL, "bad address '%s': missing :PORT (%s)", s, FORMS);
	if (memchr(buf, ':', (size_t)(colon - buf)))
		return err_setf(err, -EINVAL, "bad address '%s': an IPv6 address needs brackets, as in [::1]:4444",
				s);
	*colon = '\0';
	rc = parse_port(colon + 1, s, &port, err);
	if (rc < 0)
		return rc;
	host = buf;
	if (!*host) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons(port);
		a->len = sizeof(*sin);
		format_inet(a);
		return 0;
	}
	for (const char *p = host; *p; p++)
		if (isspace((unsigned char)*p) || *p == '[' || *p == ']' || *p == '/')
			return err_setf(err, -EINVAL, "bad address '%s': '%s' is not a host name or address (%s)",
					s, host, FORMS);
	/* All digits and dots is meant as an IPv4 address: check it here rather
	 * than let getaddrinfo accept "10.1" or send "300.1.1.1" to DNS. */
	if (strspn(host, "0123456789.") == strlen(host)) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return err_setf(err, -EINVAL, "bad address '%s': '%s' is not an IPv4 address",
					s, host);
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		a->len = sizeof(*sin);
		format_inet(a);
		return 0;
	}
	return resolve(a, host, AF_UNSPEC, port, s, err);
}

int hmig_addr_check(const char *addr, bool connect, char *errbuf)
{
	struct net_addr a;
	int rc = net_addr_parse(&a, addr, errbuf);

	if (rc)
		return rc;
	/* Port 0 asks the kernel for any port: right for a listener, never
	 * where a destination listens. */
	if (connect && a.ss.ss_family != AF_UNIX &&
	    (a.ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&a.ss)->sin6_port
					: ((struct sockaddr_in *)&a.ss)->sin_port) == 0)
		return err_setf(errbuf, -EINVAL,
				"bad address '%s': port 0 is not a port to connect to (name the port 'hmig recv --listen' uses)",
				addr);
	return 0;
}
