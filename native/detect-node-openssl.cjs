// Prints 1 when the running node has OpenSSL's headers next to its own (binding.gyp condition for slimfit_sha256,
// which uses the OpenSSL built into node), else 0.
const { existsSync } = require('node:fs');
const { dirname, join } = require('node:path');

if (process.env.SLIMFIT_NO_NODE_OPENSSL) { process.stdout.write('0'); process.exit(0); }
const prefix = dirname(dirname(process.execPath));
process.stdout.write(existsSync(join(prefix, 'include', 'node', 'openssl', 'evp.h')) ? '1' : '0');
