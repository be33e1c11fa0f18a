// Command-line flags of the test drivers (browser-login, mcp-client, oidc-op), one way for all:
// `--flag value` or `--flag=value`; a bare word is passed on as a flag of its own, so the caller
// can take it as a positional argument.

/**
 * Calls `onFlag(flag, value, arg)` for every argument. `value()` consumes the flag's value (the
 * part after `=`, or the next argument) and throws `makeError(message)` when there is none.
 */
export function forEachFlag(argv, onFlag, makeError = (m) => new Error(m)) {
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const inline = a.startsWith('--') && eq > 0;
    const flag = inline ? a.slice(0, eq) : a;
    const value = () => {
      if (inline) return a.slice(eq + 1);
      if (i + 1 >= argv.length) throw makeError(`${flag} needs a value`);
      i += 1;
      return argv[i];
    };
    onFlag(flag, value, a);
  }
}
