// The part of `pg` the PostgreSQL store uses, declared here so that Runwarden's published types need no
// @types/pg (a consumer may not have it) and so that nothing here imports `pg` at load time: a pg.Pool is a
// PostgresPool, a pg.PoolClient a PostgresClient.

export interface PostgresQueryResult<Row> {
  rows: Row[];
  rowCount: number | null;
}

/** One connection checked out of a pool. */
export interface PostgresClient {
  query<Row = Record<string, unknown>>(text: string, values?: unknown[]): Promise<PostgresQueryResult<Row>>;
  /** Back to the pool; with an error, the pool discards the connection instead. */
  release(error?: Error | boolean): void;
}

/** A pool of connections, e.g. `new pg.Pool({ connectionString })`. */
export interface PostgresPool {
  connect(): Promise<PostgresClient>;
  query<Row = Record<string, unknown>>(text: string, values?: unknown[]): Promise<PostgresQueryResult<Row>>;
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
}
