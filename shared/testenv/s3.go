package testenv

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Environment variables that point tests at the S3-compatible server.
const (
	// EnvS3 is the S3 endpoint URL, e.g. http://127.0.0.1:7070 (versitygw
	// started by deploy/dev/services.sh s3).
	EnvS3 = "SM_TEST_S3"
	// EnvS3Access is the access key id of the S3 server.
	EnvS3Access = "SM_S3_ACCESS"
	// EnvS3Secret is the secret access key of the S3 server.
	EnvS3Secret = "SM_S3_SECRET"
)

const (
	defaultS3       = "http://127.0.0.1:7070"
	defaultS3Access = "smartmaint"
	defaultS3Secret = "smartmaint-dev-secret"
	// s3Region is what versitygw accepts by default; any region works
	// with a custom endpoint as long as client and server agree.
	s3Region = "us-east-1"
)

// S3Env is one test's bucket on the S3-compatible server.
type S3Env struct {
	// Endpoint is the server URL (path-style addressing is required).
	Endpoint string
	// Region to sign requests for.
	Region string
	// AccessKey and SecretKey are the server's credentials.
	AccessKey, SecretKey string
	// Bucket was created for this test and is deleted, with its
	// objects, when the test ends.
	Bucket string
	// Client is a ready client for Endpoint with UsePathStyle set.
	Client *s3.Client
}

// S3 creates a fresh bucket on the S3-compatible server named by
// SM_TEST_S3 (default http://127.0.0.1:7070; credentials SM_S3_ACCESS and
// SM_S3_SECRET, defaults as in deploy/dev/services.sh) and deletes it with
// everything in it when the test ends. It skips (or fails under CI) when
// the server does not answer.
func S3(t testing.TB) S3Env {
	t.Helper()
	env := S3Env{
		Endpoint:  envOr(EnvS3, defaultS3),
		Region:    s3Region,
		AccessKey: envOr(EnvS3Access, defaultS3Access),
		SecretKey: envOr(EnvS3Secret, defaultS3Secret),
		Bucket:    "smtest-" + RandomID(6),
	}
	u, err := url.Parse(env.Endpoint)
	if err != nil || u.Host == "" {
		t.Fatalf("parse %s %q: not a URL", EnvS3, env.Endpoint)
	}
	c, err := net.DialTimeout("tcp", u.Host, 3*time.Second)
	if err != nil {
		Missing(t, "S3 server at %s: %v (start it with deploy/dev/services.sh s3)", env.Endpoint, err)
		return S3Env{}
	}
	c.Close()
	env.Client = NewS3Client(env.Endpoint, env.Region, env.AccessKey, env.SecretKey)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := env.Client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(env.Bucket)}); err != nil {
		t.Fatalf("create test bucket %s at %s: %v", env.Bucket, env.Endpoint, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := deleteBucket(ctx, env.Client, env.Bucket); err != nil {
			t.Logf("delete test bucket %s: %v", env.Bucket, err)
		}
	})
	return env
}

// NewS3Client returns a path-style S3 client for a custom endpoint with
// static credentials.
func NewS3Client(endpoint, region, access, secret string) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(access, secret, ""),
		UsePathStyle: true,
	})
}

func deleteBucket(ctx context.Context, c *s3.Client, bucket string) error {
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	var errs []error
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			var nb *types.NoSuchBucket
			if errors.As(err, &nb) {
				return nil
			}
			return err
		}
		for _, o := range page.Contents {
			if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: o.Key}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
