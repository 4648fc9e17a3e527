// The logger the monitor needs: pino's method shape, so a pino instance fits and so does any other logger
// that offers the same calls (a test spy, a bunyan or winston adapter).
type LogFn = {
  (message: string): void;
  (bindings: object, message?: string): void;
};

export interface MonitorLogger {
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  debug: LogFn;
  child(bindings: Record<string, unknown>): MonitorLogger;
}
