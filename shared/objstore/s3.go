package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// S3API is the part of *s3.Client that S3 uses.
type S3API interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
}

// S3 is a Store over one bucket. ETags are the server's; If-None-Match
// and If-Match are sent as HTTP conditions (a server that ignores
// conditional PUTs gives plain PUT semantics).
type S3 struct {
	Client S3API
	Bucket string
}

// Get implements Store.
func (s S3) Get(ctx context.Context, key, ifNoneMatch string, limit int64) (Object, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)}
	if ifNoneMatch != "" {
		in.IfNoneMatch = aws.String(ifNoneMatch)
	}
	out, err := s.Client.GetObject(ctx, in)
	if err != nil {
		return Object{}, fmt.Errorf("get %s: %w", s.Location(key), classify(err))
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, limit+1))
	if err != nil {
		return Object{}, fmt.Errorf("read %s: %w", s.Location(key), err)
	}
	if int64(len(data)) > limit {
		return Object{}, fmt.Errorf("read %s: object larger than the %d-byte limit", s.Location(key), limit)
	}
	return Object{Data: data, ETag: aws.ToString(out.ETag)}, nil
}

// Exists implements Store.
func (s S3) Exists(ctx context.Context, key string) (bool, error) {
	_, err := s.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err == nil {
		return true, nil
	}
	if err = classify(err); errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, fmt.Errorf("head %s: %w", s.Location(key), err)
}

// Put implements Store.
func (s S3) Put(ctx context.Context, key string, data []byte, o PutOptions) error {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.Bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
	}
	if o.ContentType != "" {
		in.ContentType = aws.String(o.ContentType)
	}
	if o.CacheControl != "" {
		in.CacheControl = aws.String(o.CacheControl)
	}
	if o.IfMatch != "" {
		in.IfMatch = aws.String(o.IfMatch)
	}
	if o.IfNoneMatch != "" {
		in.IfNoneMatch = aws.String(o.IfNoneMatch)
	}
	if _, err := s.Client.PutObject(ctx, in); err != nil {
		return fmt.Errorf("put %s: %w", s.Location(key), classify(err))
	}
	return nil
}

// Location implements Store.
func (s S3) Location(key string) string { return "s3://" + s.Bucket + "/" + key }

// classify wraps the sentinel errors around S3's 304, 404 and 412 answers.
func classify(err error) error {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotModified:
			return fmt.Errorf("%w: %w", ErrNotModified, err)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		case http.StatusPreconditionFailed:
			return fmt.Errorf("%w: %w", ErrPrecondition, err)
		}
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		case "PreconditionFailed":
			return fmt.Errorf("%w: %w", ErrPrecondition, err)
		}
	}
	return err
}
