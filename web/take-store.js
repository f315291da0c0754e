// Where a studio take's chunks wait on this device until the server has acknowledged them: IndexedDB
// (`parley-takes`), so a closed tab or a crashed browser loses seconds, not the take. The upload queue
// (take-queue.js) is written against the small interface both stores here share; MemoryTakeStore is the
// fallback where IndexedDB cannot be opened (some private modes) and the unit tests' store.
//
// Records:
// - take:  {take_id, upload_token, sample_rate, channels, first_sample_server_ms, room, name, created_ms,
//           state: 'recording' | 'ended' | 'done' | 'failed', total_samples?, end_acked?, error?, ...}
// - chunk: {take_id, seq, first_sample, samples, sha256, bytes, acked}; its samples are kept apart (a second
//          object store) so that listing a long take's chunks never reads their audio, and an acknowledged
//          chunk's audio is deleted while its line stays.

const DB_NAME = 'parley-takes';
const DB_VERSION = 1;

function promised(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function finished(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new DOMException('The storage transaction was aborted', 'AbortError'));
  });
}

function chunkMeta(chunk) {
  return {
    take_id: chunk.take_id,
    seq: chunk.seq,
    first_sample: chunk.first_sample,
    samples: chunk.samples,
    sha256: chunk.sha256,
    bytes: chunk.data ? chunk.data.byteLength : chunk.bytes || 0,
    acked: !!chunk.acked,
  };
}

export class IdbTakeStore {
  constructor(db) {
    this.db = db;
  }

  /** Opens (creating on first use) the device's take database; rejects where IndexedDB is unavailable. */
  static open(name = DB_NAME, idb = globalThis.indexedDB) {
    if (!idb) return Promise.reject(new Error('IndexedDB is not available'));
    const req = idb.open(name, DB_VERSION);
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains('takes')) db.createObjectStore('takes', { keyPath: 'take_id' });
      if (!db.objectStoreNames.contains('chunks')) db.createObjectStore('chunks', { keyPath: ['take_id', 'seq'] });
      if (!db.objectStoreNames.contains('chunk_data')) db.createObjectStore('chunk_data');
    };
    return promised(req).then((db) => {
      // Another tab upgrading the schema later: let it.
      db.onversionchange = () => db.close();
      return new IdbTakeStore(db);
    });
  }

  tx(stores, mode = 'readonly', durability = 'default') {
    return this.db.transaction(stores, mode, { durability });
  }

  async putTake(take) {
    const tx = this.tx(['takes'], 'readwrite', 'strict');
    tx.objectStore('takes').put(take);
    await finished(tx);
  }

  async getTake(takeId) {
    return (await promised(this.tx(['takes']).objectStore('takes').get(takeId))) || null;
  }

  async listTakes() {
    return promised(this.tx(['takes']).objectStore('takes').getAll());
  }

  /** Merges `patch` into the take in one transaction; resolves with the result (null: no such take). */
  async updateTake(takeId, patch) {
    const tx = this.tx(['takes'], 'readwrite', 'strict');
    const store = tx.objectStore('takes');
    const old = await promised(store.get(takeId));
    const next = old ? { ...old, ...patch } : null;
    if (next) store.put(next);
    await finished(tx);
    return next;
  }

  /** Stores a chunk and its samples together (both or neither), durably: it is uploaded only after this. */
  async putChunk(chunk) {
    const tx = this.tx(['chunks', 'chunk_data'], 'readwrite', 'strict');
    tx.objectStore('chunks').put(chunkMeta(chunk));
    tx.objectStore('chunk_data').put(chunk.data, [chunk.take_id, chunk.seq]);
    await finished(tx);
  }

  async getChunkData(takeId, seq) {
    return (await promised(this.tx(['chunk_data']).objectStore('chunk_data').get([takeId, seq]))) || null;
  }

  /** The take's chunk lines, by seq, without their samples. */
  async listChunks(takeId) {
    const range = IDBKeyRange.bound([takeId, -Infinity], [takeId, Infinity]);
    return promised(this.tx(['chunks']).objectStore('chunks').getAll(range));
  }

  /** The server has it: marked acknowledged, its samples deleted from this device. */
  async ackChunk(takeId, seq) {
    const tx = this.tx(['chunks', 'chunk_data'], 'readwrite');
    const chunks = tx.objectStore('chunks');
    const meta = await promised(chunks.get([takeId, seq]));
    if (meta && !meta.acked) chunks.put({ ...meta, acked: true });
    tx.objectStore('chunk_data').delete([takeId, seq]);
    await finished(tx);
  }

  /** Forgets the take's chunks from `seq` on (past the take's end). */
  async deleteChunksFrom(takeId, seq) {
    const tx = this.tx(['chunks', 'chunk_data'], 'readwrite');
    const range = IDBKeyRange.bound([takeId, seq], [takeId, Infinity]);
    tx.objectStore('chunks').delete(range);
    tx.objectStore('chunk_data').delete(range);
    await finished(tx);
  }

  async deleteTake(takeId) {
    const tx = this.tx(['takes', 'chunks', 'chunk_data'], 'readwrite');
    const range = IDBKeyRange.bound([takeId, -Infinity], [takeId, Infinity]);
    tx.objectStore('takes').delete(takeId);
    tx.objectStore('chunks').delete(range);
    tx.objectStore('chunk_data').delete(range);
    await finished(tx);
  }
}

const copy = (v) => (v == null ? v : structuredClone(v));
const chunkKey = (takeId, seq) => `${typeof takeId}:${takeId}#${seq}`;

/** The same interface in memory (copies in and out, as IndexedDB's structured clone does). */
export class MemoryTakeStore {
  constructor() {
    this.takes = new Map();
    this.chunks = new Map(); // chunkKey -> meta
    this.data = new Map(); // chunkKey -> ArrayBuffer
  }

  async putTake(take) {
    this.takes.set(take.take_id, copy(take));
  }

  async getTake(takeId) {
    return copy(this.takes.get(takeId)) || null;
  }

  async listTakes() {
    return [...this.takes.values()].map(copy);
  }

  async updateTake(takeId, patch) {
    const old = this.takes.get(takeId);
    if (!old) return null;
    const next = { ...old, ...copy(patch) };
    this.takes.set(takeId, next);
    return copy(next);
  }

  async putChunk(chunk) {
    const key = chunkKey(chunk.take_id, chunk.seq);
    this.chunks.set(key, chunkMeta(chunk));
    this.data.set(key, chunk.data.slice(0));
  }

  async getChunkData(takeId, seq) {
    const d = this.data.get(chunkKey(takeId, seq));
    return d ? d.slice(0) : null;
  }

  async listChunks(takeId) {
    return [...this.chunks.values()].filter((c) => c.take_id === takeId).sort((a, b) => a.seq - b.seq).map(copy);
  }

  async ackChunk(takeId, seq) {
    const key = chunkKey(takeId, seq);
    const meta = this.chunks.get(key);
    if (meta) meta.acked = true;
    this.data.delete(key);
  }

  async deleteChunksFrom(takeId, seq) {
    for (const [key, meta] of this.chunks) {
      if (meta.take_id === takeId && meta.seq >= seq) {
        this.chunks.delete(key);
        this.data.delete(key);
      }
    }
  }

  async deleteTake(takeId) {
    this.takes.delete(takeId);
    for (const [key, meta] of this.chunks) {
      if (meta.take_id === takeId) {
        this.chunks.delete(key);
        this.data.delete(key);
      }
    }
  }
}

/** The device's store: IndexedDB where it opens, else memory (the take then survives no reload). */
export async function openTakeStore() {
  try {
    return { store: await IdbTakeStore.open(), durable: true };
  } catch (err) {
    console.warn('[parley] takes: IndexedDB unavailable, keeping takes in memory only', err);
    return { store: new MemoryTakeStore(), durable: false };
  }
}
