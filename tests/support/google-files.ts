/**
 * The Gemini Files API as the SDKs meet it, on a MockUpstream: a resumable upload
 * (`POST /upload/{version}/files` with `X-Goog-Upload-Command: start` answers with the
 * session URL in `x-goog-upload-url`, on the upstream's own origin; each
 * `upload`/`upload, finalize` command to that URL sends bytes at `X-Goog-Upload-Offset`,
 * answered `x-goog-upload-status: active`, then `final` with the File), and a download
 * (`GET /{version}/files/{id}:download?alt=media` redirects with 302 to
 * `/download/{version}/files/{id}:download?alt=media`, which answers the bytes).
 *
 * How the SDKs read this, checked in their sources: @google/genai 3.3 (`fetchUploadUrl`,
 * `uploadBlobInternal`) and google-genai 2.25 (`_upload_fd`) take `x-goog-upload-url`,
 * swap in the base URL's scheme and host, send 8 MiB chunks, and stop at a status other
 * than `active`. @google/genai throws on any answer that is not 2xx, so between chunks
 * Google answers 200 (not 308) with `x-goog-upload-status: active`.
 */
import type { MockUpstream, Recorded } from './mock-upstream.ts';

export interface FakeFile {
  id: string;
  mimeType: string;
  bytes: Uint8Array;
  /** Chunks received: offset, length, command. */
  chunks: Array<{ offset: number; length: number; command: string }>;
  done: boolean;
}

export class GoogleFiles {
  /** Upload sessions by upload_id. */
  readonly sessions = new Map<string, FakeFile>();
  /** Files by id (finished uploads, and files put there by a test). */
  readonly files = new Map<string, FakeFile>();
  private n = 0;

  /** `origin`: the upstream's origin as its answers spell it (defaults to the mock's URL). */
  constructor(
    mock: MockUpstream,
    private readonly origin = mock.url,
  ) {
    mock.respondWith((req, rec) => this.answer(req, rec));
  }

  private answer(req: Request, rec: Recorded): Response | undefined {
    // Any API version (@google/genai 3.3 defaults to v1, google-genai 2.25 to v1beta).
    const upload = /^\/upload\/(v1\w*)\/files$/.exec(rec.path);
    if (upload) return this.upload(req, rec, upload[1]!);
    const download = /^\/(v1\w*)\/files\/([^/:]+):download$/.exec(rec.path);
    if (download && rec.method === 'GET') {
      return new Response(null, {
        status: 302,
        headers: { location: `${this.origin}/download/${download[1]}/files/${download[2]}:download?alt=media` },
      });
    }
    const bytes = /^\/download\/v1\w*\/files\/([^/:]+):download$/.exec(rec.path);
    if (bytes && rec.method === 'GET') {
      const file = this.files.get(bytes[1]!);
      if (!file) return Response.json({ error: { code: 404, message: 'no such file' } }, { status: 404 });
      return new Response(file.bytes as Uint8Array<ArrayBuffer>, { headers: { 'content-type': file.mimeType } });
    }
    return undefined;
  }

  private upload(req: Request, rec: Recorded, version: string): Response {
    const command = (req.headers.get('x-goog-upload-command') ?? '').toLowerCase();
    const id = new URLSearchParams(rec.query).get('upload_id');
    if (command === 'start' && !id) {
      const uploadId = `ABgVH8${(++this.n).toString().padStart(4, '0')}-${crypto.randomUUID()}`;
      const size = Number(req.headers.get('x-goog-upload-header-content-length') ?? 0);
      this.sessions.set(uploadId, {
        id: `mockfile${this.n}`,
        mimeType: req.headers.get('x-goog-upload-header-content-type') ?? 'application/octet-stream',
        bytes: new Uint8Array(size),
        chunks: [],
        done: false,
      });
      return new Response(null, {
        headers: {
          'x-goog-upload-url': `${this.origin}/upload/${version}/files?upload_id=${uploadId}&upload_protocol=resumable`,
          'x-goog-upload-control-url': `${this.origin}/upload/${version}/files?upload_id=${uploadId}&upload_protocol=resumable`,
          'x-goog-upload-status': 'active',
          'x-goog-upload-chunk-granularity': '8388608',
          'content-length': '0',
        },
      });
    }
    const session = id ? this.sessions.get(id) : undefined;
    if (!session || session.done)
      return Response.json({ error: { code: 404, message: 'unknown upload' } }, { status: 404 });
    const offset = Number(req.headers.get('x-goog-upload-offset') ?? -1);
    if (!command.startsWith('upload') || offset < 0 || offset + rec.body.byteLength > session.bytes.byteLength)
      return Response.json({ error: { code: 400, message: 'bad upload command' } }, { status: 400 });
    session.bytes.set(rec.body, offset);
    session.chunks.push({ offset, length: rec.body.byteLength, command });
    if (!command.includes('finalize'))
      return new Response(null, { headers: { 'x-goog-upload-status': 'active', 'content-length': '0' } });
    session.done = true;
    this.files.set(session.id, session);
    const name = `files/${session.id}`;
    return Response.json(
      {
        file: {
          name,
          mimeType: session.mimeType,
          sizeBytes: String(session.bytes.byteLength),
          state: 'ACTIVE',
          // Identifiers the SDKs send back and parse: never rewritten.
          uri: `${this.origin}/${version}/${name}`,
          downloadUri: `${this.origin}/${version}/${name}:download?alt=media`,
        },
      },
      { headers: { 'x-goog-upload-status': 'final' } },
    );
  }
}
