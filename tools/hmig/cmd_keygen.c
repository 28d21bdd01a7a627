/* hmig keygen: credentials for the channels' TLS (keygen.c does the work). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "keygen.h"

void cmd_keygen_usage(void)
{
	printf("usage: hmig keygen [--tls-creds DIR [--name NAME]] [--psk FILE [--identity ID]]\n\n"
	       "Makes credentials for 'hmig send' and 'hmig recv' (README, \"Trust model\").\n"
	       "  --tls-creds DIR  a new CA and, signed by it, a destination (server) and a\n"
	       "                   source (client) certificate with their keys: ca-cert.pem,\n"
	       "                   server-cert.pem, server-key.pem, client-cert.pem,\n"
	       "                   client-key.pem (ECDSA P-256, 10 years).  The CA's key is\n"
	       "                   not kept.  Copy the directory to both hosts; the source\n"
	       "                   needs no server key, the destination no client key.\n"
	       "  --name NAME      goes into the certificates' names (default \"migration\")\n"
	       "  --psk FILE       a random 32-byte pre-shared key, 'identity:hexkey'\n"
	       "                   (GnuTLS psktool's format), mode 0600; copy it to both hosts\n"
	       "  --identity ID    the key's identity (default \"hmig\")\n");
}

int cmd_keygen(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "tls-creds", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'n' },
		{ "psk", required_argument, NULL, 'p' },
		{ "identity", required_argument, NULL, 'i' },
		{ 0 }
	};
	const char *dir = NULL, *name = "migration", *psk = NULL, *identity = "hmig";
	char err[256];
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': dir = optarg; break;
		case 'n': name = optarg; break;
		case 'p': psk = optarg; break;
		case 'i': identity = optarg; break;
		default:
			die_msg("unknown or incomplete option '%s': run 'hmig keygen --help'",
				argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind < argc || (!dir && !psk)) {
		die_msg("keygen needs --tls-creds DIR or --psk FILE: run 'hmig keygen --help'");
		return EXIT_USAGE;
	}
	if (dir) {
		if (keygen_x509(dir, name, err)) {
			die_msg("%s", err);
			return 1;
		}
		printf("hmig keygen: X.509 credentials in %s (ca-cert.pem, server-*.pem, client-*.pem)\n", dir);
	}
	if (psk) {
		if (keygen_psk(psk, identity, err)) {
			die_msg("%s", err);
			return 1;
		}
		printf("hmig keygen: pre-shared key in %s (identity %s)\n", psk, identity);
	}
	return 0;
}
