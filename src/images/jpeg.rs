//! JPEG pre-flight for thumbnails: walks the marker structure of a JPEG stream (without decoding
//! or buffering it) to prove the data reaches its end-of-image marker, to find how many bytes the
//! image really spans, and to estimate what the decoder will allocate besides the output pixels.
//! It also provides the bounded reader that hands the decoder exactly those bytes. It must not
//! decode pixels, allocate in proportion to the file, or know about HTTP, the store or async.
//!
//! Why this exists: image 0.25's JPEG decoder (zune-jpeg in non-strict mode) accepts a file cut
//! short and fills the missing rows with grey, so a truncated upload would silently become a
//! half-grey thumbnail. Checking only that the last two bytes are `FF D9` is not enough either:
//! phone "motion photos" append a video after the JPEG's end marker, and multi-picture files
//! append further JPEGs. Walking the segments and the entropy-coded data finds the end marker
//! that closes the first image wherever it is, and everything after it is never read into memory.

use std::io::{self, BufRead, Read, Seek, SeekFrom};

/// What the walk found out about a complete JPEG image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JpegLayout {
    /// Bytes from the start-of-image marker through the end-of-image marker, inclusive.
    pub length: u64,
    /// The first frame header (SOFn), if any.
    pub frame: Option<Frame>,
    /// The decoder keeps DCT coefficients for the whole image (progressive coding, or a first scan
    /// that does not carry every component) instead of working one row of blocks at a time.
    pub buffers_whole_image: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Frame {
    pub width: u16,
    pub height: u16,
    /// Horizontal and vertical sampling factors, one pair per component.
    pub sampling: Vec<(u8, u8)>,
    pub progressive: bool,
}

#[derive(Debug)]
pub(super) enum InspectError {
    /// The data ends before the end-of-image marker.
    Truncated,
    /// The marker structure itself is broken.
    Malformed(&'static str),
    Io(io::Error),
}

impl From<io::Error> for InspectError {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::UnexpectedEof { InspectError::Truncated } else { InspectError::Io(err) }
    }
}

impl JpegLayout {
    /// Bytes of DCT coefficients zune-jpeg allocates when it buffers the whole image: one `i16`
    /// per sample of every component, padded to whole MCUs (its `mcu_prog.rs` sizing).
    pub fn coefficient_bytes(&self) -> u64 {
        let Some(frame) = self.frame.as_ref().filter(|_| self.buffers_whole_image) else { return 0 };
        let h_max = u64::from(frame.sampling.iter().map(|s| s.0).max().unwrap_or(1).max(1));
        let v_max = u64::from(frame.sampling.iter().map(|s| s.1).max().unwrap_or(1).max(1));
        let mcus_x = u64::from(frame.width).div_ceil(8 * h_max);
        let mcus_y = u64::from(frame.height).div_ceil(8 * v_max);
        frame.sampling.iter().map(|&(h, v)| 2 * 64 * u64::from(h.max(1)) * u64::from(v.max(1)) * mcus_x * mcus_y).sum()
    }

    pub fn dimensions(&self) -> Option<(u32, u32)> {
        self.frame.as_ref().map(|f| (u32::from(f.width), u32::from(f.height)))
    }
}

/// Walks the JPEG that starts at the reader's current position up to its first end-of-image
/// marker. Reads the stream once, holding at most one marker segment (64 KiB) at a time.
pub(super) fn inspect<R: BufRead>(reader: R) -> Result<JpegLayout, InspectError> {
    let mut walker = Walker { inner: reader, position: 0 };
    let mut soi = [0u8; 2];
    walker.read_exact(&mut soi)?;
    if soi != [0xFF, 0xD8] {
        return Err(InspectError::Malformed("it does not start with a JPEG start-of-image marker"));
    }
    let mut frame: Option<Frame> = None;
    let mut first_scan_components: Option<usize> = None;
    let mut pending = None;
    loop {
        let marker = match pending.take() {
            Some(marker) => marker,
            None => walker.next_marker()?,
        };
        match marker {
            // End of image: the first image is complete.
            0xD9 => {
                let buffers_whole_image = match (&frame, first_scan_components) {
                    (Some(frame), Some(scanned)) => frame.progressive || scanned < frame.sampling.len(),
                    (Some(frame), None) => frame.progressive,
                    (None, _) => false,
                };
                return Ok(JpegLayout { length: walker.position, frame, buffers_whole_image });
            }
            // Markers without a length field: TEM, and restart markers stray outside a scan.
            0x01 | 0xD0..=0xD7 => {}
            0xD8 => return Err(InspectError::Malformed("it has a second start-of-image marker before the end")),
            // Start of scan: its header, then entropy-coded data up to the next marker.
            0xDA => {
                let header = walker.segment()?;
                let components = usize::from(*header.first().ok_or(InspectError::Malformed("a scan header is empty"))?);
                first_scan_components.get_or_insert(components);
                pending = Some(walker.skip_entropy_coded_data()?);
            }
            // Frame headers: every SOFn except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let header = walker.segment()?;
                if frame.is_none() {
                    frame = Some(parse_frame(marker, &header)?);
                }
            }
            _ => walker.skip_segment()?,
        }
    }
}

fn parse_frame(marker: u8, header: &[u8]) -> Result<Frame, InspectError> {
    const BROKEN: InspectError = InspectError::Malformed("its frame header is too short");
    let fixed = header.get(..6).ok_or(BROKEN)?;
    let count = usize::from(fixed[5]);
    let specs = header.get(6..6 + 3 * count).ok_or(BROKEN)?;
    Ok(Frame {
        height: u16::from_be_bytes([fixed[1], fixed[2]]),
        width: u16::from_be_bytes([fixed[3], fixed[4]]),
        sampling: specs.chunks_exact(3).map(|c| (c[1] >> 4, c[1] & 0x0F)).collect(),
        // SOF2, SOF6, SOF10 and SOF14 are the progressive processes.
        progressive: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
    })
}

struct Walker<R> {
    inner: R,
    position: u64,
}

impl<R: BufRead> Walker<R> {
    fn read_exact(&mut self, out: &mut [u8]) -> Result<(), InspectError> {
        self.inner.read_exact(out)?;
        self.position += out.len() as u64;
        Ok(())
    }

    /// The code of the next marker. Stray bytes before it are skipped, as libjpeg does (with a
    /// warning), so a file it displays is not refused here.
    fn next_marker(&mut self) -> Result<u8, InspectError> {
        let mut after_ff = false;
        loop {
            let mut byte = [0u8];
            self.read_exact(&mut byte)?;
            match (after_ff, byte[0]) {
                (_, 0xFF) => after_ff = true,
                (true, 0x00) | (false, _) => after_ff = false,
                (true, code) => return Ok(code),
            }
        }
    }

    fn segment_length(&mut self) -> Result<u64, InspectError> {
        let mut length = [0u8; 2];
        self.read_exact(&mut length)?;
        let length = u16::from_be_bytes(length);
        if length < 2 {
            return Err(InspectError::Malformed("a segment length is shorter than its own field"));
        }
        Ok(u64::from(length - 2))
    }

    fn segment(&mut self) -> Result<Vec<u8>, InspectError> {
        let length = self.segment_length()?;
        let mut body = vec![0u8; length as usize];
        self.read_exact(&mut body)?;
        Ok(body)
    }

    fn skip_segment(&mut self) -> Result<(), InspectError> {
        let length = self.segment_length()?;
        let skipped = io::copy(&mut (&mut self.inner).take(length), &mut io::sink())?;
        self.position += skipped;
        if skipped < length { Err(InspectError::Truncated) } else { Ok(()) }
    }

    /// Skips entropy-coded data and returns the code of the marker that ends it. Inside the data
    /// `FF 00` is an escaped `FF` byte and `FF D0`..`FF D7` are restart markers; any other marker
    /// ends the scan.
    fn skip_entropy_coded_data(&mut self) -> Result<u8, InspectError> {
        let mut after_ff = false;
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Err(InspectError::Truncated);
            }
            let mut index = 0;
            let mut found = None;
            while index < buf.len() {
                if after_ff {
                    match buf[index] {
                        0xFF => {}
                        0x00 | 0xD0..=0xD7 => after_ff = false,
                        code => {
                            found = Some(code);
                            index += 1;
                            break;
                        }
                    }
                    index += 1;
                } else {
                    match buf[index..].iter().position(|&b| b == 0xFF) {
                        Some(offset) => {
                            index += offset + 1;
                            after_ff = true;
                        }
                        None => index = buf.len(),
                    }
                }
            }
            self.inner.consume(index);
            self.position += index as u64;
            if let Some(code) = found {
                return Ok(code);
            }
        }
    }
}

/// A reader over `length` bytes of `inner` starting at `start`, so the decoder (which reads its
/// whole input into memory) sees the JPEG and not whatever a camera appended after it.
pub(super) struct Window<R> {
    inner: R,
    start: u64,
    length: u64,
    position: u64,
}

impl<R: BufRead + Seek> Window<R> {
    pub fn new(mut inner: R, start: u64, length: u64) -> io::Result<Self> {
        inner.seek(SeekFrom::Start(start))?;
        Ok(Window { inner, start, length, position: 0 })
    }
}

impl<R: BufRead> Read for Window<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let count = available.len().min(out.len());
        out[..count].copy_from_slice(&available[..count]);
        self.consume(count);
        Ok(count)
    }
}

impl<R: BufRead> BufRead for Window<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let remaining = self.length.saturating_sub(self.position);
        if remaining == 0 {
            return Ok(&[]);
        }
        let buf = self.inner.fill_buf()?;
        let count = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        Ok(&buf[..count])
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount);
        self.position += amount as u64;
    }
}

impl<R: Seek> Seek for Window<R> {
    fn seek(&mut self, target: SeekFrom) -> io::Result<u64> {
        let target = match target {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.length.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the JPEG"))?;
        let absolute = self
            .start
            .checked_add(target)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek past the largest offset"))?;
        self.inner.seek(SeekFrom::Start(absolute))?;
        self.position = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// SOI, a frame header, one scan whose data holds an escaped FF and a restart marker, EOI.
    fn minimal_jpeg(sof: u8, scan_components: u8) -> Vec<u8> {
        let mut data = vec![0xFF, 0xD8];
        data.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB]);
        data.extend_from_slice(&[0xFF, sof, 0x00, 0x11, 8, 0x00, 0x20, 0x00, 0x30, 3]);
        data.extend_from_slice(&[1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        data.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, scan_components, 1, 0, 0, 63, 0]);
        data.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56, 0xFF, 0xFF, 0xD9]);
        data
    }

    #[test]
    fn a_complete_jpeg_reports_the_bytes_through_its_end_marker_and_ignores_what_follows() {
        let mut data = minimal_jpeg(0xC0, 3);
        let length = data.len() as u64;
        data.extend_from_slice(b"....ftypmp42 appended motion photo video");
        let layout = inspect(Cursor::new(&data)).unwrap();
        assert_eq!(layout.length, length);
        assert_eq!(layout.dimensions(), Some((48, 32)));
        assert!(!layout.buffers_whole_image);
        assert_eq!(layout.coefficient_bytes(), 0);
    }

    #[test]
    fn a_jpeg_cut_anywhere_before_its_end_marker_is_truncated() {
        let data = minimal_jpeg(0xC0, 3);
        for cut in 2..data.len() {
            let result = inspect(Cursor::new(&data[..cut]));
            assert!(matches!(result, Err(InspectError::Truncated)), "cut at {cut}: {result:?}");
        }
    }

    #[test]
    fn a_progressive_jpeg_is_charged_for_its_coefficient_buffers() {
        let layout = inspect(Cursor::new(minimal_jpeg(0xC2, 1))).unwrap();
        assert!(layout.buffers_whole_image);
        // 4:2:0 on 48x32: 3x2 MCUs of 16x16; Y holds 4 blocks per MCU, Cb and Cr one each.
        assert_eq!(layout.coefficient_bytes(), 2 * 64 * (4 + 1 + 1) * 3 * 2);
    }

    #[test]
    fn a_baseline_jpeg_whose_first_scan_lacks_components_is_charged_too() {
        let layout = inspect(Cursor::new(minimal_jpeg(0xC0, 1))).unwrap();
        assert!(layout.buffers_whole_image);
    }

    #[test]
    fn the_window_shows_only_its_bytes_and_seeks_within_them() {
        let mut window = Window::new(Cursor::new(b"xxHELLOyy".to_vec()), 2, 5).unwrap();
        let mut text = String::new();
        window.read_to_string(&mut text).unwrap();
        assert_eq!(text, "HELLO");
        assert_eq!(window.seek(SeekFrom::End(-2)).unwrap(), 3);
        text.clear();
        window.read_to_string(&mut text).unwrap();
        assert_eq!(text, "LO");
        assert!(window.seek(SeekFrom::Current(-10)).is_err());
    }
}
