/**
 * The explorer page: one HTML file with its CSS and JS inline (no framework, no CDN),
 * embedded in the binary as text. The Content-Security-Policy allows exactly that
 * inline script and style (by hash) and requests to this origin, so logged content
 * (paths, models, bodies) can never run as script even if rendering had a bug.
 */
import { createHash } from 'node:crypto';
import page from './ui.html' with { type: 'text' };

export const UI_HTML: string = page as unknown as string;

const hashOf = (re: RegExp): string => {
  const m = re.exec(UI_HTML);
  if (!m) throw new Error(`explorer page: ${re} not found`);
  return `'sha256-${createHash('sha256').update(m[1]!).digest('base64')}'`;
};

export const UI_CSP = [
  "default-src 'none'",
  `script-src ${hashOf(/<script>([\s\S]*?)<\/script>/)}`,
  `style-src ${hashOf(/<style>([\s\S]*?)<\/style>/)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
